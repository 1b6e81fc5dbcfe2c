"""ServeConfig: the options of `tamer serve`, one name each across the CLI, Python and recipes."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import check, field

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeConfig:
    host: str = field("127.0.0.1", "address to bind (loopback by default)")
    port: int = field(8000, "TCP port (0: any free port)")
    workers: int = field(1, "uvicorn worker processes; each loads the model and follows every reload")
    max_batch_size: int = field(32, "inputs the dynamic batcher runs through the model at once (1: no batching)")
    max_wait_ms: float = field(5.0, "longest an input waits for others to fill its batch")
    max_queue: int = field(256, "inputs waiting at most; beyond, 503 with Retry-After")
    max_inputs: int = field(64, "inputs one request may carry")
    max_text_chars: int = field(10_000, "characters one text input may have")
    max_body_bytes: int = field(1_000_000, "bytes one request body may have (413 beyond)")
    max_tokens: int = field(256, "largest max_tokens a completion may ask for")
    max_new_tokens: int = field(20, "tokens a language model generates for /v1/predict")
    poll_seconds: float = field(2.0, "how often each worker re-reads the model source (0: never)")
    drain_seconds: float = field(30.0, "on SIGTERM, longest wait for accepted requests to be answered")

    def __post_init__(self):
        check(0 <= self.port <= 65535, f"--port {self.port} is out of range; use 0..65535.")
        check(1 <= self.workers <= 64, f"--workers {self.workers} is out of range; use 1..64.")
        check(1 <= self.max_batch_size <= 4096, f"--max-batch-size {self.max_batch_size} is out of range; use 1..4096.")
        check(0 <= self.max_wait_ms <= 60_000, f"--max-wait-ms {self.max_wait_ms} is out of range; use 0..60000.")
        check(self.max_queue >= 1, f"--max-queue {self.max_queue} is not accepted; use a positive integer.")
        check(self.max_inputs >= 1, f"--max-inputs {self.max_inputs} is not accepted; use a positive integer.")
        check(self.max_text_chars >= 1, f"--max-text-chars {self.max_text_chars} is not accepted; use a positive integer.")
        check(self.max_body_bytes >= 64, f"--max-body-bytes {self.max_body_bytes} is too small; use at least 64.")
        check(1 <= self.max_tokens <= 100_000, f"--max-tokens {self.max_tokens} is out of range; use 1..100000.")
        check(1 <= self.max_new_tokens <= 100_000, f"--max-new-tokens {self.max_new_tokens} is out of range; use 1..100000.")
        check(self.poll_seconds >= 0, f"--poll-seconds {self.poll_seconds} is not accepted; use a value >= 0.")
        check(self.drain_seconds >= 0, f"--drain-seconds {self.drain_seconds} is not accepted; use a value >= 0.")
