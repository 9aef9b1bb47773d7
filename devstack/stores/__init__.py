"""The stores, played locally (never deployed): the App Store's certificate chain and signer."""
