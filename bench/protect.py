"""bench/protect.py: tamer's protection measured against its peers in the same run.

  encryption   tamer's streamed, authenticated format vs raw AES-256-GCM over the same bytes: in memory (the
               ceiling: no I/O, no framing), file to file on the disk and in RAM (/dev/shm) against the same
               I/O by hand and against copying the bytes with no cipher at all (what the disk alone can do);
               and peak memory (RSS) of `tamer encrypt` run as a user runs it on a large (sparse) artifact
  scrubbing    precision / recall per entity on Faker PII (en_US, zh_CN, de_DE), false masks on the sentiment
               sentences, lines/s on each, against a plain-regex baseline (no checksums, no context); seconds per
               MB on adversarial 1 MB lines (repeated IPv4, DE12 + letters, digit runs, e-mails, @, phones,
               full-width digits, ...); Presidio is not usable offline here (it needs a spaCy model that cannot
               be installed)
  names        person and address (bench/protect_names.py): recall / precision per locale on held-out templates,
               false masks on the sentiment sentences, lines/s with them on, Presidio over a blank spaCy pipeline
  privacy      DP-SGD (Opacus) on digits at epsilon 3, delta 1e-5: accuracy over three seeds, and time against the
               same model without DP, as the whole `tamer train` process and as loop against loop (best of 3,
               interleaved)
  federated    FedAvg, 10 clients, Dirichlet alpha 0.5, 20 rounds vs centralised training with the same optimizer
  dp_text      DP on the MiniLM sentiment model (yelp) at epsilon 8 against the non-private fine-tune, same seed; and
               the secure noise (SecureRandom: AES-CTR under OS entropy) against torch.normal for MiniLM's weight count

    .venv/bin/python bench/protect.py [--quick] [--json] [--big-gb 2] [--only encryption,scrub,names,privacy,federated,dp_text]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "protection"))  # the Faker corpus shared with the tests


class _Discard:
    """A sink that keeps nothing: measures the format without any I/O."""

    def write(self, b) -> int:
        return len(b)


# Forks the measured command from this small process, not from the bench: on Linux a child's peak RSS counts the
# memory of the process it was forked from until exec (hundreds of MB here), which would hide the number we want.
_LAUNCH = """import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, time.perf_counter() - t0, os.waitstatus_to_exitcode(status))
"""


def _child_rss(cmd: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, stderr) of one process running `cmd`, measured by wait4 on that process alone."""
    done = subprocess.run([sys.executable, "-c", _LAUNCH, *cmd], capture_output=True, text=True)
    peak_kb, seconds, code = done.stdout.split()[-3:]
    if done.returncode or int(code):
        raise RuntimeError(f"{' '.join(cmd[:6])} failed ({code}): {done.stderr[-2000:]}")
    return int(peak_kb) / 1024, float(seconds), done.stderr


def _file_to_file(folder: Path, src: Path, secret, chunk: int) -> dict[str, float]:
    """Seconds of tamer's encrypt_file, of the same by hand with raw AES-GCM, and of a plain copy (no cipher),
    each writing `folder` and fsyncing, like tamer."""
    import shutil

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tamer.protection import crypto

    aes, out, times = AESGCM(secret.key), folder / "out.bin", {}
    t0 = time.perf_counter()
    crypto.encrypt_file(src, out, secret)
    times["tamer"] = time.perf_counter() - t0
    out.unlink()
    t0 = time.perf_counter()  # read a chunk, AES-GCM it, write it, fsync at the end (no framing, no rename)
    with open(src, "rb") as fin, open(out, "wb") as fout:
        while piece := fin.read(chunk):
            fout.write(aes.encrypt(os.urandom(12), piece, b""))
        fout.flush()
        os.fsync(fout.fileno())
    times["raw_by_hand"] = time.perf_counter() - t0
    out.unlink()
    t0 = time.perf_counter()  # the disk alone: the same bytes copied, no cipher
    with open(src, "rb") as fin, open(out, "wb") as fout:
        shutil.copyfileobj(fin, fout, chunk)
        fout.flush()
        os.fsync(fout.fileno())
    times["copy"] = time.perf_counter() - t0
    out.unlink()
    return times


def bench_encryption(size_mb: int, big_gb: float) -> dict:
    import io

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tamer.protection import crypto, keys

    secret = keys.Secret(key=keys.generate_key())
    chunk = crypto.DEFAULT_CHUNK
    size = size_mb * (1 << 20) // chunk * chunk
    data = os.urandom(size)
    aes, view = AESGCM(secret.key), memoryview(data)
    sealed_chunk = bytearray(chunk + 16)
    sealed = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(data), sealed, secret)
    sealed = sealed.getvalue()
    raw_sealed = [aes.encrypt(bytes(12), bytes(view[i:i + chunk]), b"") for i in range(0, size, chunk)]
    plain_chunk = bytearray(chunk)
    mem = {"raw_encrypt": [], "raw_encrypt_alloc": [], "tamer_encrypt": [], "raw_decrypt": [], "tamer_decrypt": []}
    for _ in range(3):  # interleaved repeats: the machine is shared, take the best of each
        t0 = time.perf_counter()  # raw AES-GCM at its fastest: distinct chunks, into one reused buffer
        for i in range(0, size, chunk):
            aes.encrypt_into(os.urandom(12), view[i:i + chunk], b"", sealed_chunk)
        mem["raw_encrypt"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # the usual call: a new bytes object per chunk
        for i in range(0, size, chunk):
            aes.encrypt(os.urandom(12), view[i:i + chunk], b"")
        mem["raw_encrypt_alloc"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        crypto.encrypt_stream(io.BytesIO(data), _Discard(), secret)
        mem["tamer_encrypt"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for piece in raw_sealed:
            aes.decrypt_into(bytes(12), piece, b"", plain_chunk)
        mem["raw_decrypt"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        crypto.decrypt_stream(io.BytesIO(sealed), _Discard(), secret)
        mem["tamer_decrypt"].append(time.perf_counter() - t0)
    del sealed, raw_sealed
    out = {"size_mb": size >> 20, "chunk_mb": chunk >> 20, **{f"{k}_gbps": round(size / min(v) / 1e9, 3) for k, v in mem.items()}}
    out["encrypt_ratio"] = round(out["tamer_encrypt_gbps"] / out["raw_encrypt_gbps"], 3)
    out["encrypt_alloc_ratio"] = round(out["tamer_encrypt_gbps"] / out["raw_encrypt_alloc_gbps"], 3)
    out["decrypt_ratio"] = round(out["tamer_decrypt_gbps"] / out["raw_decrypt_gbps"], 3)

    shm = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    places = {"disk": tempfile.TemporaryDirectory(dir=ROOT)}
    if shm is not None:
        places["ram"] = tempfile.TemporaryDirectory(dir=shm)
    try:
        srcs = {}
        for place, tmp in places.items():
            srcs[place] = Path(tmp.name) / "plain.bin"
            srcs[place].write_bytes(data)
        del data, view
        os.sync()
        files = {place: {"tamer": [], "raw_by_hand": [], "copy": []} for place in places}
        for _ in range(3):
            for place, tmp in places.items():
                for k, v in _file_to_file(Path(tmp.name), srcs[place], secret, chunk).items():
                    files[place][k].append(v)
        for place, times in files.items():
            g = {k: size / min(v) / 1e9 for k, v in times.items()}
            out[f"{place}_gbps"] = {k: round(v, 3) for k, v in g.items()}
            out[f"{place}_vs_raw"] = round(g["tamer"] / g["raw_by_hand"], 3)
            out[f"{place}_vs_copy"] = round(g["tamer"] / g["copy"], 3)

        # `tamer encrypt` as a user runs it, on an artifact whose weights file is a large sparse file (reads as
        # zeros; nothing big in RAM unless the code puts it there)
        from tamer.artifact import MANIFEST, SCHEMA_VERSION, WEIGHTS, content_id, sha256_file

        tmp = Path(places["disk"].name)
        art = tmp / "big-artifact"
        art.mkdir()
        with open(art / WEIGHTS, "wb") as f:
            f.truncate(int(big_gb * (1 << 30)))
        manifest = {"schema_version": SCHEMA_VERSION, "task": {"name": "digits"}, "model_config": {}, "format": "fp32",
                    "files": {WEIGHTS: sha256_file(art / WEIGHTS)}}
        manifest["id"] = content_id(manifest)
        (art / MANIFEST).write_text(json.dumps(manifest))
        key = tmp / "k.key"
        keys.write_key_file(key)
        cli = [sys.executable, "-X", "importtime", "-m", "tamer"]
        rss, seconds, err = _child_rss([*cli, "encrypt", str(art), "--key-file", str(key), "--out", str(tmp / "sealed")])
        imported = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
        import_rss, _, _ = _child_rss([sys.executable, "-c", "import tamer.cli"])
        torch_rss, _, _ = _child_rss([sys.executable, "-c", "import torch"])
    finally:
        for tmp in places.values():
            tmp.cleanup()
    return {**out, "big_gb": big_gb, "big_seconds": round(seconds, 2), "big_peak_rss_mb": round(rss, 1),
            "big_imports_torch": "torch" in imported, "import_rss_mb": round(import_rss, 1),
            "torch_import_rss_mb": round(torch_rss, 1)}


_BASELINE = {  # what a quick regex pass would use: no checksums, no context, no CJK-aware boundaries
    "email": r"\S+@\S+\.\w+", "phone": r"\+?\(?\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,5}", "credit_card": r"\b(?:\d[ -]?){13,19}\b",
    "iban": r"\b[A-Z]{2}\d{2}[A-Z0-9 ]{11,30}\b", "us_ssn": r"\b\d{3}-\d{2}-\d{4}\b", "ip_address": r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    "url": r"https?://\S+", "cn_resident_id": r"\b\d{17}[\dX]\b", "date_of_birth": r"\b\d{4}-\d{2}-\d{2}\b",
}


def _baseline_find(text):
    from tamer.protection.detect import Found

    found = []
    for entity, pattern in _BASELINE.items():
        for m in re.finditer(pattern, text):
            if all(m.end() <= f.start or m.start() >= f.end for f in found):
                found.append(Found(m.start(), m.end(), entity, m.group()))
    return found


def bench_scrub(per_entity: int, adversarial_mb: float = 1.0) -> dict:
    from pii_corpus import ADVERSARIAL, adversarial_line, pii_corpus, score

    from tamer.protection.detect import ENTITIES, find_pii

    out = {"per_entity": per_entity, "locales": {}}
    all_lines = []
    for locale in ("en_US", "zh_CN", "de_DE"):
        corpus = pii_corpus(locale, per_entity, seed=11)
        all_lines += [t for t, _ in corpus]
        out["locales"][locale] = {"tamer": score([find_pii(t) for t, _ in corpus], corpus),
                                  "regex": score([_baseline_find(t) for t, _ in corpus], corpus)}
    sentiment = ROOT.parent / "shared" / "data" / "sentiment"
    clean = [l.rsplit("\t", 1)[0] for f in sorted(sentiment.glob("*_labelled.txt"))
             for l in f.read_text(encoding="utf-8", errors="replace").splitlines()] if sentiment.is_dir() else []
    if clean:
        out["sentiment_lines"] = len(clean)
        out["sentiment_flagged_tamer"] = sum(bool(find_pii(l, ENTITIES)) for l in clean) / len(clean)
        out["sentiment_flagged_regex"] = sum(bool(_baseline_find(l)) for l in clean) / len(clean)
    for part, lines in (("", (all_lines + clean) * 3), ("_faker", all_lines * 3), ("_sentiment", clean * 3)):
        for name, fn in (("tamer", find_pii), ("regex", _baseline_find)):
            t0 = time.perf_counter()
            for l in lines:
                fn(l)
            out[f"lines_per_second{part}_{name}"] = round(len(lines) / max(time.perf_counter() - t0, 1e-9))
    size = int(adversarial_mb * 1_000_000)
    out["adversarial_mb"] = adversarial_mb
    out["adversarial_seconds_per_mb"] = {}
    for kind in ADVERSARIAL:
        text = adversarial_line(kind, size)
        t0 = time.perf_counter()
        find_pii(text, ENTITIES)
        out["adversarial_seconds_per_mb"][kind] = round((time.perf_counter() - t0) / adversarial_mb, 2)
    return out


def _plain_fit(task, splits, opts, seed, model_config=None):
    """The same loop as DP training without Opacus: the non-private baseline (time and accuracy)."""
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)
    model = task.build_model(model_config or task.model_config())
    opt = torch.optim.AdamW(model.parameters(), lr=opts["lr"], weight_decay=0.0)
    t0 = time.perf_counter()
    for epoch in range(opts["epochs"]):
        model.train()
        for batch in DataLoader(splits.train, batch_size=opts["batch_size"], shuffle=True, collate_fn=task.collate,
                                generator=torch.Generator().manual_seed(seed + epoch)):
            opt.zero_grad()
            task.loss(task.forward(model, batch), batch).backward()
            opt.step()
        task.evaluate(model, splits.val)
    return time.perf_counter() - t0, task.evaluate(model.eval(), splits.test)["accuracy"]


# `tamer train` in a fresh process, as a user runs it: the DP command, and the non-private verb training the
# same tanh MLP (registered as a task whose usual model is digits' DP variant) for the same epochs, batch and rate
_VERB = """import sys
from tamer.tasks import register_task
from tamer.tasks.digits import DigitsTask
@register_task
class SameModel(DigitsTask):
    name = "bench-digits-dp-model"
    def model_config(self):
        return self.private_model_config()
from tamer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _verb_seconds(args: list[str], out: Path) -> tuple[float, float]:
    """Wall seconds of one `tamer train` process (start to exit) and its training loop's seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _VERB, *args, "--out", str(out), "--json"], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    wall = time.perf_counter() - t0
    return wall, json.loads((out / "manifest.json").read_text())["run"]["seconds"]


def bench_privacy(quick: bool) -> dict:
    from tamer.protection import PrivacyConfig
    from tamer.protection.privacy import DP_DEFAULTS, private_model_config, train_private
    from tamer.tasks import make_task

    opts = dict(DP_DEFAULTS)
    if quick:
        opts["epochs"] = 3
    seeds = [0] if quick else [0, 1, 2]  # each seed is its own split, initialisation and noise
    privacy = PrivacyConfig(private=True, epsilon=3.0, delta=1e-5)
    task = make_task("digits")
    dp, plain = [], []
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        _plain_fit(task, task.prepare(0), {**opts, "epochs": 1}, 0, private_model_config(task))  # warm-up
        # (b) loop against loop, interleaved: no imports, no data preparation, no artifact on either side
        for seed in seeds:
            art = train_private(task, {**opts, "seed": seed}, privacy, Path(tmp) / f"dp{seed}", show_progress=False)
            dp.append((art.manifest["run"]["seconds"], art.metrics["test"]["accuracy"], art.manifest["privacy"]))
            plain.append(_plain_fit(task, task.prepare(seed), opts, seed, private_model_config(task)))
        # (a) the whole verb, each a fresh process, interleaved
        common = ["--epochs", str(opts["epochs"]), "--batch-size", str(opts["batch_size"]), "--lr", str(opts["lr"])]
        verb = {"private": [], "plain": []}
        for r in range(1 if quick else 3):
            verb["private"].append(_verb_seconds(["train", "digits", "--private", "--epsilon", "3", "--delta", "1e-5", *common],
                                                 Path(tmp) / f"vp{r}"))
            verb["plain"].append(_verb_seconds(["train", "bench-digits-dp-model", *common, "--weight-decay", "0",
                                                "--scheduler", "constant", "--patience", "0"], Path(tmp) / f"vn{r}"))
    # and the task's usual model trained as usual (its train defaults), for the accuracy a non-private run reaches
    usual = make_task("digits")
    _, usual_acc = _plain_fit(usual, usual.prepare(0), {**opts, **usual.train_defaults()}, 0)
    accs = [a for _, a, _ in dp]
    p = dp[0][2]
    dp_loop, plain_loop = min(s for s, _, _ in dp), min(s for s, _ in plain)
    dp_verb, plain_verb = min(w for w, _ in verb["private"]), min(w for w, _ in verb["plain"])
    return {"options": opts, "model": "DigitsMLP", "seeds": seeds, "dp_accuracy": accs,
            "dp_accuracy_mean": sum(accs) / len(accs), "dp_accuracy_min": min(accs),
            "plain_accuracy": [a for _, a in plain], "plain_accuracy_mean": sum(a for _, a in plain) / len(plain),
            "epsilon": max(d[2]["epsilon"] for d in dp), "noise_multiplier": p["noise_multiplier"],
            "grad_sample_mode": p["grad_sample_mode"], "steps": p["steps"], "usual_model_accuracy": usual_acc,
            "dp_verb_seconds": round(dp_verb, 2), "plain_verb_seconds": round(plain_verb, 2),
            "verb_time_ratio": round(dp_verb / plain_verb, 2),
            "plain_verb_loop_seconds": round(min(s for _, s in verb["plain"]), 2),
            "dp_loop_seconds": round(dp_loop, 2), "plain_loop_seconds": round(plain_loop, 2),
            "loop_time_ratio": round(dp_loop / plain_loop, 2)}


def bench_federated(quick: bool) -> dict:
    import copy

    import numpy as np
    import torch
    from torch.utils.data import Subset

    from tamer.protection.federated import FederateConfig, deal, run_rounds
    from tamer.tasks import make_task

    rounds = 3 if quick else 20
    task = make_task("digits")
    splits = task.prepare(0)
    labels = np.asarray([splits.train[i]["labels"] for i in range(len(splits.train))])
    config = FederateConfig(clients=10, rounds=rounds, split="dirichlet", dirichlet_alpha=0.5)
    torch.manual_seed(0)
    init = task.build_model(task.model_config())
    out = {"clients": 10, "rounds": rounds, "dirichlet_alpha": 0.5}
    shards = deal(labels, 10, "dirichlet", 0.5, 0)
    history = []
    t0 = time.perf_counter()
    fed = copy.deepcopy(init)
    run_rounds(task, fed, [Subset(splits.train, s.tolist()) for s in shards if len(s)], config,
               after_round=lambda r: history.append(task.evaluate(fed, splits.val)["accuracy"]))
    out["fedavg_seconds"] = round(time.perf_counter() - t0, 1)
    out["fedavg_accuracy"] = task.evaluate(fed.eval(), splits.test)["accuracy"]
    out["fedavg_val_per_round"] = [round(a, 4) for a in history]
    t0 = time.perf_counter()
    central = run_rounds(task, copy.deepcopy(init), [splits.train], config)  # one client with all data: plain SGD
    out["central_seconds"] = round(time.perf_counter() - t0, 1)
    out["central_accuracy"] = task.evaluate(central.eval(), splits.test)["accuracy"]
    out["client_sizes"] = [len(s) for s in shards]
    return out


def bench_dp_text(quick: bool) -> dict:
    import torch

    import tamer
    from tamer.protection.secure_random import SecureRandom

    sentiment = ROOT.parent / "shared" / "data" / "sentiment" / "yelp_labelled.txt"
    out = {}
    n = 22_700_000  # MiniLM's weights: the noise of one DP step over all of them
    rng = SecureRandom()
    rng.normal((1000,), 1.0)
    t0 = time.perf_counter()
    rng.normal((n,), 1.0)
    out["secure_noise_seconds"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    torch.normal(0.0, 1.0, (n,))
    out["torch_noise_seconds"] = round(time.perf_counter() - t0, 3)
    if not sentiment.is_file():
        return out
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        t0 = time.perf_counter()
        dp = tamer.train("text-classification", data=str(sentiment), private=True, epsilon=8.0,
                         **({"epochs": 2} if quick else {}), out=Path(tmp) / "dp", progress=False)
        out["dp_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        plain = tamer.train("text-classification", data=str(sentiment), **({"epochs": 1} if quick else {}),
                            out=Path(tmp) / "plain", progress=False)
        out["plain_seconds"] = round(time.perf_counter() - t0, 1)
    out.update(dp_accuracy=dp.metrics["test"]["accuracy"], plain_accuracy=plain.metrics["test"]["accuracy"],
               epsilon=dp.manifest["privacy"]["epsilon"], dp_epochs=dp.manifest["options"]["epochs"],
               plain_epochs=plain.manifest["options"].get("epochs"), frozen=dp.manifest["privacy"]["frozen"])
    return out


def table(r: dict) -> str:
    rows = ["| measure | tamer | peer | ratio / note |", "|---|---|---|---|"]
    if "encryption" in r:
        e = r["encryption"]
        rows += [f"| encrypt GB/s in memory ({e['size_mb']} MB, {e['chunk_mb']} MiB chunks, no I/O) | {e['tamer_encrypt_gbps']} | raw AES-GCM encrypt_into {e['raw_encrypt_gbps']} | {e['encrypt_ratio']}x |",
                 f"| encrypt GB/s in memory, vs the usual call | {e['tamer_encrypt_gbps']} | raw AES-GCM encrypt (new bytes per chunk) {e['raw_encrypt_alloc_gbps']} | {e['encrypt_alloc_ratio']}x |",
                 f"| decrypt GB/s in memory | {e['tamer_decrypt_gbps']} | raw AES-GCM decrypt_into {e['raw_decrypt_gbps']} | {e['decrypt_ratio']}x |"]
        for place, where, alone in (("disk", "on the disk", "the disk"), ("ram", "in RAM (/dev/shm)", "RAM")):
            if f"{place}_gbps" in e:
                g = e[f"{place}_gbps"]
                rows += [f"| encrypt GB/s file to file {where}, fsync | {g['tamer']} | raw AES-GCM read/encrypt/write/fsync by hand {g['raw_by_hand']} | {e[f'{place}_vs_raw']}x |",
                         f"| encrypt GB/s file to file {where}, vs no cipher | {g['tamer']} | plain copy + fsync, no cipher ({alone} alone) {g['copy']} | {e[f'{place}_vs_copy']}x |"]
        rows.append(f"| peak RSS of `tamer encrypt`, {e['big_gb']} GB artifact (sparse weights) | {e['big_peak_rss_mb']} MB | "
                    f"`import tamer.cli` alone {e['import_rss_mb']} MB; `import torch` alone {e['torch_import_rss_mb']} MB | "
                    f"{e['big_seconds']} s incl. sha256 check; torch imported: {'yes' if e['big_imports_torch'] else 'no'} |")
    if "scrub" in r:
        s = r["scrub"]
        for locale, v in s["locales"].items():
            for entity, m in v["tamer"].items():
                b = v["regex"].get(entity, {"precision": 0.0, "recall": 0.0})
                rows.append(f"| scrub {locale} {entity} P / R (n={m['support']}) | {m['precision']:.3f} / {m['recall']:.3f} | "
                            f"regex {b['precision']:.3f} / {b['recall']:.3f} | |")
        if "sentiment_lines" in s:
            rows.append(f"| sentiment lines flagged ({s['sentiment_lines']}) | {s['sentiment_flagged_tamer']:.2%} | regex {s['sentiment_flagged_regex']:.2%} | |")
        rows.append(f"| scrub lines/s | {s['lines_per_second_tamer']:,} | regex {s['lines_per_second_regex']:,} | "
                    f"{s['lines_per_second_tamer'] / s['lines_per_second_regex']:.2f}x |")
        for part, name in (("_faker", "Faker rows"), ("_sentiment", "sentiment sentences")):
            if f"lines_per_second{part}_tamer" in s:
                t, b = s[f"lines_per_second{part}_tamer"], s[f"lines_per_second{part}_regex"]
                rows.append(f"| scrub lines/s, {name} | {t:,} | regex {b:,} | {t / b:.2f}x |")
        for kind, sec in s.get("adversarial_seconds_per_mb", {}).items():
            rows.append(f"| scrub s/MB, adversarial line `{kind}` ({s['adversarial_mb']} MB, all entities) | {sec} | | "
                        f"test bound 30 s |")
    if "names" in r:
        from protect_names import rows as name_rows

        rows += name_rows(r["names"])
    if "privacy" in r:
        p = r["privacy"]
        seeds = ",".join(map(str, p["seeds"]))
        rows += [f"| DP digits test accuracy, mean / min of seeds {seeds} ({p['model']}, eps <= {p['epsilon']:.3f}, delta 1e-5, {p['grad_sample_mode']} clipping) | {p['dp_accuracy_mean']:.4f} / {p['dp_accuracy_min']:.4f} | non-private same model {p['plain_accuracy_mean']:.4f} | sigma {p['noise_multiplier']:.2f}, {p['steps']} steps |",
                 f"| non-private digits CNN (the task's usual model, its train defaults) | | {p['usual_model_accuracy']:.4f} | |",
                 f"| DP time, whole verb: `tamer train digits --private` process vs `tamer train` of the same model, epochs, batch | {p['dp_verb_seconds']} s | {p['plain_verb_seconds']} s (its loop {p['plain_verb_loop_seconds']} s) | {p['verb_time_ratio']}x |",
                 f"| DP time, loop against loop, no imports (the goal row: <= 3x) | {p['dp_loop_seconds']} s | same loop without Opacus {p['plain_loop_seconds']} s | {p['loop_time_ratio']}x |"]
    if "federated" in r:
        f = r["federated"]
        rows += [f"| FedAvg 10 clients Dirichlet 0.5, {f['rounds']} rounds: test accuracy | {f['fedavg_accuracy']:.4f} | centralised {f['central_accuracy']:.4f} | "
                 f"{100 * (f['fedavg_accuracy'] - f['central_accuracy']):+.1f} points |"]
    if "dp_text" in r:
        d = r["dp_text"]
        rows.append(f"| secure DP noise for 22.7 M weights (one MiniLM step), s | {d['secure_noise_seconds']} | torch.normal "
                    f"(seeded, replayable) {d['torch_noise_seconds']} | {d['secure_noise_seconds'] / max(d['torch_noise_seconds'], 1e-9):.1f}x |")
        if "dp_accuracy" in d:
            rows.append(f"| DP MiniLM sentiment (yelp) test accuracy, eps <= {d['epsilon']:.2f}, {d['dp_epochs']} epochs, head over "
                        f"the public encoder | {d['dp_accuracy']:.3f} ({d['dp_seconds']} s) | non-private fine-tune, "
                        f"{d['plain_epochs']} epochs {d['plain_accuracy']:.3f} ({d['plain_seconds']} s) | "
                        f"{100 * (d['dp_accuracy'] - d['plain_accuracy']):+.1f} points |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--big-gb", type=float, default=2.0, help="size of the sparse file for the peak-memory run")
    ap.add_argument("--only", default="encryption,scrub,names,privacy,federated,dp_text")
    args = ap.parse_args()
    parts = args.only.split(",")
    results = {}
    if "encryption" in parts:
        results["encryption"] = bench_encryption(64 if args.quick else 512, 0.25 if args.quick else args.big_gb)
    if "scrub" in parts:
        results["scrub"] = bench_scrub(30 if args.quick else 300, 0.1 if args.quick else 1.0)
    if "names" in parts:
        from protect_names import bench_names

        results["names"] = bench_names(60 if args.quick else 300)
    if "privacy" in parts:
        results["privacy"] = bench_privacy(args.quick)
    if "federated" in parts:
        results["federated"] = bench_federated(args.quick)
    if "dp_text" in parts:
        results["dp_text"] = bench_dp_text(args.quick)
    print(json.dumps(results, indent=2) if args.json else table(results))


if __name__ == "__main__":
    main()
