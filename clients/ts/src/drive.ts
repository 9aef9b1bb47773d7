// The app flow, as an app team writes it with a client generated from the live /openapi.json
// (openapi-typescript types + openapi-fetch): models, submit, replay, wait, download, history,
// ledger, cancel, a 401 and a 422. Compiled with `tsc --strict`, no cast anywhere.
// Env: VIDEOGEN_API (base URL), VIDEOGEN_TOKEN (a user's bearer token, with at least 2 jobs' credits).
import createClient from "openapi-fetch";
import type { paths } from "./generated/schema.js";

const MODEL = "kling-2.1-standard-i2v";
const TERMINAL = new Set(["completed", "failed", "canceled"]);

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`FAILED: ${what}`);
  console.log(`ok   ${what}`);
}

function present<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new Error(`FAILED: ${what} is missing`);
  return value;
}

const baseUrl = env("VIDEOGEN_API");
const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${env("VIDEOGEN_TOKEN")}` } });
const anonymous = createClient<paths>({ baseUrl });

function submit(key: string, prompt: string) {
  return api.POST("/v1/videos", {
    params: { header: { "Idempotency-Key": key } },
    body: { model: MODEL, input: { prompt, image_url: "https://example.com/heron.png" } },
  });
}

async function waitFinished(id: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { data } = await api.GET("/v1/videos/{id}", { params: { path: { id } } });
    const job = present(data, `GET /v1/videos/${id} body`);
    if (TERMINAL.has(job.status)) return job;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  throw new Error(`FAILED: job ${id} did not finish in ${timeoutMs / 1000} s`);
}

async function main(): Promise<void> {
  // models: public, no token
  const models = present((await anonymous.GET("/v1/models")).data, "GET /v1/models body");
  const model = present(
    models.items.find((m) => m.id === MODEL),
    `model ${MODEL} in GET /v1/models`,
  );
  check(model.credits > 0, `GET /v1/models lists ${models.items.length} models, ${MODEL} costs ${model.credits}`);
  const before = present((await api.GET("/v1/credits")).data, "GET /v1/credits body").balance;

  // submit, then the same key and body again: the stored answer
  const key = crypto.randomUUID();
  const first = await submit(key, "a heron taking off");
  const accepted = present(first.data, `POST /v1/videos body (status ${first.response.status})`);
  const job = accepted.job;
  check(first.response.status === 202 && job.id !== "", `POST /v1/videos → 202, job ${job.id}`);
  check(first.response.headers.get("Location") === `/v1/videos/${job.id}`, "Location header names the job");
  check(accepted.credits.charged === model.credits, `charged ${accepted.credits.charged} credits`);
  const replay = await submit(key, "a heron taking off");
  check(
    replay.response.status === 202 && replay.response.headers.get("Idempotent-Replayed") === "true",
    "same key again → 202 with Idempotent-Replayed: true",
  );
  check(JSON.stringify(replay.data) === JSON.stringify(first.data), "the replay's body is the first answer's");

  // wait, then download the video from our bucket
  const done = await waitFinished(job.id, 90_000);
  check(done.status === "completed", `job ${job.id} completed`);
  const video = present(done.video, "the completed job's video");
  const bytes = new Uint8Array(await (await fetch(video.url)).arrayBuffer());
  const ftyp = new TextDecoder().decode(bytes.subarray(4, 8));
  check(bytes.length === video.size_bytes && ftyp === "ftyp", `downloaded ${bytes.length} bytes of MP4`);

  // history and ledger
  const history = present((await api.GET("/v1/videos", { params: { query: { limit: 10 } } })).data, "history");
  check(
    history.items.some((j) => j.id === job.id && j.status === "completed"),
    "GET /v1/videos lists the job as completed",
  );
  const ledger = present((await api.GET("/v1/credits")).data, "GET /v1/credits body");
  check(
    ledger.balance === before - model.credits &&
      ledger.ledger.some((e) => e.type === "charge" && e.job_id === job.id && e.amount === model.credits),
    `GET /v1/credits: balance ${ledger.balance}, one charge for the job`,
  );

  // cancel a job right after submitting it: canceled and refunded
  const second = present((await submit(crypto.randomUUID(), "a heron landing")).data, "second submit");
  const canceled = await api.POST("/v1/videos/{id}/cancel", { params: { path: { id: second.job.id } } });
  check(
    canceled.response.status === 200 &&
      canceled.data?.status === "canceled" &&
      canceled.data.credits_refunded === second.job.credits_charged,
    `POST /v1/videos/${second.job.id}/cancel → 200 canceled, credits_refunded ${canceled.data?.credits_refunded}`,
  );
  const after = present((await api.GET("/v1/credits")).data, "GET /v1/credits body");
  check(
    after.balance === ledger.balance && after.ledger.some((e) => e.type === "refund" && e.job_id === second.job.id),
    "the canceled job is refunded",
  );

  // no token: API Gateway's own 401
  const anon = await anonymous.GET("/v1/credits");
  check(
    anon.response.status === 401 && anon.error !== undefined && "message" in anon.error,
    `no token → 401 ${JSON.stringify(anon.error)}`,
  );

  // bad input: 422 validation_failed, nothing charged
  const bad = await api.POST("/v1/videos", {
    params: { header: { "Idempotency-Key": crypto.randomUUID() } },
    body: { model: MODEL, input: { prompt: "", image_url: "https://example.com/heron.png" } },
  });
  const problem = bad.error;
  check(
    bad.response.status === 422 && problem !== undefined && "code" in problem && problem.code === "validation_failed",
    `empty prompt → 422 ${problem !== undefined && "code" in problem ? problem.code : "?"}`,
  );
  const last = present((await api.GET("/v1/credits")).data, "GET /v1/credits body");
  check(last.balance === after.balance, "nothing charged for the 422");
  console.log("typescript client: app flow PASSED");
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
