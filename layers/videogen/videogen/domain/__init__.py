"""The domain: jobs, credits, the model registry and errors. No boto3, no HTTP."""
