"""bench/explain.py: tamer's explanations measured against their peers in the same run.

  ig          integrated gradients, 50 steps, on real MiniLM (all-MiniLM-L6-v2 fine-tuned for sentiment) and one
              32-token input: tamer's attribution path vs Captum's LayerIntegratedGradients called directly on the
              same model, baseline and target (interleaved repeats, medians), with the completeness error
  sentiment   ERASER comprehensiveness / sufficiency of IG on that MiniLM over the sentences of (batch) vs random
              attributions (the peer that any explanation must beat)
  digits      deletion / insertion AUC of IG on a trained digits CNN over its test split vs random attributions
  batch       integrated gradients over N sentences (Yelp, unseen: the model is fine-tuned on the Amazon file), 50
              steps: tamer's batch path (up to 32 texts of similar length per Captum call) vs Captum's
              LayerIntegratedGradients called once per sentence (same model loaded once, same steps, baseline and
              targets) on --one-by-one sentences spread over the file, alternating; the word attributions of both
              compared; then the verb in batch mode with default options (its rate, ERASER and completeness)

  one         one `tamer explain --input TEXT` with default options (completeness, faithfulness, sanity check) vs
              one IG run of 50 steps on the same text (goal <= 3x), and with `--global` (the old default)

    flock /tmp/tamer-bench.lock .venv/bin/python bench/explain.py [--json] [--threads 2] [--sentences 1000]
        [--one-by-one 40] [--epochs 1] [--reps 3] [--artifact MINILM] [--only ig,one,batch,digits]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sentiment"


def read_tsv(path: Path) -> list[tuple[str, str]]:
    rows = [line.rsplit("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
    return [(t.strip(), y.strip()) for t, y in rows if t.strip()]


def text_of_tokens(tokenizer, words: list[str], n_tokens: int) -> str:
    """The longest prefix of `words` that tokenizes to at most `n_tokens` (special tokens included), padded with
    one-token words up to exactly `n_tokens`."""
    text = ""
    for w in words:
        nxt = (text + " " + w).strip()
        if len(tokenizer(nxt)["input_ids"]) > n_tokens:
            break
        text = nxt
    while len(tokenizer(text)["input_ids"]) < n_tokens:
        text += " good"
    assert len(tokenizer(text)["input_ids"]) == n_tokens
    return text


def median_time(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_ig(artifact, reps: int) -> dict:
    """tamer's IG path vs Captum's LayerIntegratedGradients on the same 32-token input, interleaved."""
    from captum.attr import LayerIntegratedGradients

    from tamer.explanation.config import ExplainConfig
    from tamer.explanation.subjects import TextSubject

    task, model = artifact.load_model()
    subject = TextSubject(task, model)
    words = " ".join(t for t, _ in read_tsv(DATA / "yelp_labelled.txt")[:20]).split()
    text = text_of_tokens(task.tokenizer, words, 32)
    item = subject.make_items([text], ["input"])[0]
    ids, (mask,) = subject.batch([item])
    with torch.no_grad():
        target = subject.forward(ids, mask).argmax(-1)
    base = subject.baseline_ids([item], ids, "pad")
    config = ExplainConfig(input=text, n_steps=50, max_steps=50)

    def forward(i, m):
        return torch.softmax(model(i, m), dim=-1)

    lig = LayerIntegratedGradients(forward, model.encoder.get_input_embeddings())

    def captum():
        attr, delta = lig.attribute(ids, baselines=base, target=target, additional_forward_args=(mask,), n_steps=50,
                                    return_convergence_delta=True)
        return attr.sum(-1)[0], float(delta[0])

    def tamer_ig():
        return subject.attribute([item], target, config, "pad")

    captum(), tamer_ig()  # warm-up
    t_captum, t_tamer = [], []
    for _ in range(reps):
        t, (c_attr, c_delta) = median_time(captum, 1)
        t_captum.append(t)
        t, (words_attr, a) = median_time(tamer_ig, 1)
        t_tamer.append(t)
    # completeness, independently of Captum's delta: sum of word attributions against F(x) - F(baseline)
    with torch.no_grad():
        change = float(forward(ids, mask)[0, target] - forward(base, mask)[0, target])
    independent = abs(sum(words_attr[0]) - change) / max(abs(change), 1e-4)
    default = ExplainConfig(input=text)  # tolerance 1e-3, steps raised while above it
    t_default, (_, a_default) = median_time(lambda: subject.attribute([item], target, default, "pad"), 1)
    return {"text": text, "tokens": int(ids.shape[1]), "words": len(item.words), "steps": 50,
            "captum_s": statistics.median(t_captum), "tamer_s": statistics.median(t_tamer),
            "time_ratio": statistics.median(t_tamer) / statistics.median(t_captum),
            "completeness_error": a.errors[0], "completeness_error_independent": independent,
            "captum_completeness_error": abs(c_delta) / max(abs(change), 1e-4),
            "captum_vs_tamer_max_abs_diff": float(max(abs(sum(float(c_attr[t]) for t, w in enumerate(item.word_ids) if w == k)
                                                          - words_attr[0][k]) for k in range(len(item.words)))),
            "output_change": change,
            "default_steps": a_default.steps[0], "default_error": a_default.errors[0], "default_s": t_default}


def bench_batch(artifact, sentences: list[str], labels: list[str], n_single: int, work: Path, rounds: int = 4) -> dict:
    """The attribution itself: tamer's batch path (batches of similar lengths, one Captum call each) over all the
    sentences vs Captum's LayerIntegratedGradients called once per sentence, on `n_single` sentences spread over the
    file; same model (loaded once), 50 steps, pad baseline and targets on both sides, no completeness refinement. The
    two alternate in `rounds` so that a change in the machine's load falls on both. Then the verb in batch mode with
    its default options (steps raised for completeness, ERASER) for its quality numbers and its own rate."""
    from captum.attr import LayerIntegratedGradients

    import tamer
    from tamer.explanation.config import ExplainConfig
    from tamer.explanation.explainer import attribute_items, resolve_targets
    from tamer.explanation.subjects import TextSubject

    task, model = artifact.load_model()
    subject = TextSubject(task, model)
    items = subject.make_items(sentences, [str(i) for i in range(len(sentences))])
    targets = resolve_targets(subject, items, ExplainConfig(input_file="x"))[0]
    fixed = ExplainConfig(input_file="x", n_steps=50, max_steps=50)
    lig = LayerIntegratedGradients(subject.forward, subject.layer)

    def captum_one(i: int):
        ids, (mask,) = subject.batch([items[i]])
        base = subject.baseline_ids([items[i]], ids, "pad")
        return lig.attribute(ids, baselines=base, target=torch.tensor([targets[i]]), additional_forward_args=(mask,),
                             n_steps=50).detach().sum(-1)[0]

    pick = np.linspace(0, len(items) - 1, n_single).round().astype(int)  # spread over the file: representative lengths
    captum_one(int(pick[0])), attribute_items(subject, items[:8], targets[:8], fixed, "pad")  # warm-up
    t_tamer = t_captum = 0.0
    scores: list = [None] * len(items)
    peer: dict = {}
    for r in range(rounds):
        share = np.arange(r, len(items), rounds)
        t0 = time.perf_counter()
        got, _ = attribute_items(subject, [items[i] for i in share], [targets[i] for i in share], fixed, "pad")
        t_tamer += time.perf_counter() - t0
        for i, v in zip(share, got):
            scores[i] = v
        t0 = time.perf_counter()
        for i in pick[r::rounds]:
            peer[int(i)] = captum_one(int(i))
        t_captum += time.perf_counter() - t0
    # the same numbers: Captum's token attributions summed per word against tamer's batched word attributions
    diff = max(abs(sum(float(peer[i][t]) for t, w in enumerate(items[i].word_ids) if w == k) - scores[i][k])
               for i in peer for k in range(len(items[i].words)))

    (work / "sentences.txt").write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    t0 = time.perf_counter()
    report = tamer.explain(str(artifact.path), input_file=str(work / "sentences.txt"), out=work / "batch", sanity="none",
                           global_examples=0, progress=False)
    t_verb = time.perf_counter() - t0
    accuracy = float(np.mean([r["predicted"] == y for r, y in zip(report.items, labels)]))
    m = report.gate_metrics()
    n = len(sentences)
    return {"sentences": n, "tokens_mean": float(np.mean([len(it.ids) for it in items])), "steps": 50,
            "attr_batch_s": t_tamer, "attr_batch_per_s": n / t_tamer,
            "captum_one_by_one_measured": len(pick), "captum_one_by_one_s": t_captum, "captum_per_s": len(pick) / t_captum,
            "attr_ratio": (n / t_tamer) / (len(pick) / t_captum), "max_abs_diff_vs_captum": diff,
            "verb_s": t_verb, "verb_per_s": n / t_verb,
            "completeness_max_error": m["completeness_max_error"], "completeness_within_tolerance": m["completeness_within_tolerance"],
            "max_steps_used": report.completeness["max_steps_used"], "accuracy": accuracy,
            "comprehensiveness": m["comprehensiveness"], "random_comprehensiveness": m["random_comprehensiveness"],
            "comprehensiveness_ratio": m["comprehensiveness_ratio"],
            "sufficiency": m["sufficiency"], "random_sufficiency": m["random_sufficiency"]}


def bench_one(artifact, text: str, ig_s: float, reps: int, work: Path) -> dict:
    """One `tamer.explain --input TEXT` with default options (IG with completeness, faithfulness, sanity check), model
    load and files included, against one IG run of 50 steps; and once with the global view over 100 test examples
    (`--global`, the default before issue 14)."""
    import tamer

    runs = iter(range(10 ** 6))
    one = lambda **kw: tamer.explain(str(artifact.path), input=text, out=work / f"one-{next(runs)}", progress=False, **kw)  # noqa: E731
    one()  # warm-up
    t_default, report = median_time(one, reps)
    t_global, _ = median_time(lambda: one(global_examples=100), 1)
    return {"default_s": t_default, "global_s": t_global, "ig_run_s": ig_s, "ratio_to_ig_run": t_default / ig_s,
            "global_ratio_to_ig_run": t_global / ig_s, "steps": report.completeness["max_steps_used"],
            "completeness_error": report.completeness["max_error"]}


def bench_digits(work: Path) -> dict:
    import tamer

    art = tamer.train("digits", epochs=20, seed=0, out=work / "digits", progress=False)
    n = len(art.load_model()[0].prepare(0).test)
    out = {"test_images": n, "accuracy": art.metrics.get("test", {}).get("accuracy")}
    for method in ("ig", "saliency", "occlusion"):
        r = tamer.explain(art, index=tuple(range(n)), method=method, sanity="none", global_examples=0,
                          out=work / f"digits-{method}", progress=False)
        m = r.gate_metrics()
        out[method] = {k: m[k] for k in ("deletion_auc", "random_deletion_auc", "deletion_auc_ratio", "insertion_auc",
                                         "random_insertion_auc")}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=1000, help="sentences explained in batch mode")
    ap.add_argument("--one-by-one", type=int, default=40, help="of those, explained one per Captum call (the peer's rate)")
    ap.add_argument("--epochs", type=int, default=1, help="MiniLM fine-tuning epochs on the Amazon sentences")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--artifact", help="a fine-tuned MiniLM sentiment artifact to use instead of fine-tuning one")
    ap.add_argument("--only", default="ig,one,batch,digits", help="comma-separated sections to run")
    args = ap.parse_args()
    only = set(args.only.split(","))
    torch.set_num_threads(args.threads)
    import tamer

    work = Path(tempfile.mkdtemp(prefix="tamer-bench-explain-"))
    say = (lambda *a: print(*a, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if args.artifact:
        art = tamer.load(args.artifact)
    else:
        amazon = read_tsv(DATA / "amazon_cells_labelled.txt")
        (work / "amazon.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in amazon), encoding="utf-8")
        art = tamer.train("text-classification", data=str(work / "amazon.tsv"), encoder="minilm", epochs=args.epochs,
                          seed=0, out=work / "minilm", progress=False)
        say(f"fine-tuned MiniLM on {len(amazon)} Amazon sentences in {time.perf_counter() - t0:.0f} s: {art.metrics}")
    results: dict = {"threads": args.threads, "minilm_metrics": art.metrics}
    results["ig"] = bench_ig(art, args.reps)
    say("ig", results["ig"])
    if "one" in only:
        results["one"] = bench_one(art, results["ig"]["text"], results["ig"]["tamer_s"], args.reps, work)
        say("one", results["one"])
    if "batch" in only:
        yelp = read_tsv(DATA / "yelp_labelled.txt")[: args.sentences]
        results["batch"] = bench_batch(art, [t for t, _ in yelp], [y for _, y in yelp], min(args.one_by_one, len(yelp)), work)
        say("batch", results["batch"])
    if "digits" in only:
        results["digits"] = bench_digits(work)
        say("digits", results["digits"])

    ig, b, d, o = (results.get(k) for k in ("ig", "batch", "digits", "one"))
    rows = [
        ("IG 50 steps, MiniLM, 32 tokens: time (s)", ig["tamer_s"], "Captum LIG", ig["captum_s"], ig["time_ratio"], "<= 1.1x", ig["time_ratio"] <= 1.1),
        ("  completeness error (relative)", ig["completeness_error"], "Captum LIG", ig["captum_completeness_error"], None, "<= 1e-3",
         ig["completeness_error"] <= 1e-3),
        (f"  with steps raised automatically ({ig['default_steps']} steps)", ig["default_error"], "", None, None, "<= 1e-3",
         ig["default_error"] <= 1e-3),
    ]
    if o:
        rows += [
            ("one explanation (verb, defaults), MiniLM: time (s)", o["default_s"], "one IG run (50 steps)", o["ig_run_s"],
             o["ratio_to_ig_run"], "<= 3x", o["ratio_to_ig_run"] <= 3),
            ("  with --global (100 test examples)", o["global_s"], "one IG run (50 steps)", o["ig_run_s"],
             o["global_ratio_to_ig_run"], "", None),
        ]
    if b:
        rows += [
            (f"sentiment comprehensiveness (IG, {b['sentences']} Yelp)", b["comprehensiveness"], "random", b["random_comprehensiveness"],
             b["comprehensiveness_ratio"], ">= 2x", b["comprehensiveness_ratio"] >= 2),
            ("  sufficiency (lower is better)", b["sufficiency"], "random", b["random_sufficiency"], None, "", None),
            (f"IG batch, {b['sentences']} sentences, 50 steps: sent/s", b["attr_batch_per_s"],
             f"Captum LIG 1/call ({b['captum_one_by_one_measured']})", b["captum_per_s"], b["attr_ratio"], ">= 3x", b["attr_ratio"] >= 3),
            ("  the verb, batch, defaults (steps raised): sent/s", b["verb_per_s"], "", None, None, "", None),
        ]
    if d:
        rows += [
            (f"digits deletion AUC (IG, {d['test_images']} test)", d["ig"]["deletion_auc"], "random", d["ig"]["random_deletion_auc"],
             d["ig"]["deletion_auc_ratio"], "<= 0.5x", d["ig"]["deletion_auc_ratio"] <= 0.5),
            ("  digits deletion AUC (saliency)", d["saliency"]["deletion_auc"], "random", d["saliency"]["random_deletion_auc"],
             d["saliency"]["deletion_auc_ratio"], "", None),
            ("  digits deletion AUC (occlusion)", d["occlusion"]["deletion_auc"], "random", d["occlusion"]["random_deletion_auc"],
             d["occlusion"]["deletion_auc_ratio"], "", None),
        ]
    results["table"] = [dict(zip(("metric", "tamer", "peer", "peer_value", "ratio", "goal", "pass"), r)) for r in rows]
    results["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(results, indent=2, default=float))
        return 0
    fmt = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    print(f"explain bench, {args.threads} threads; MiniLM {args.artifact or f'fine-tuned {args.epochs} epoch(s) on Amazon'}, "
          f"test accuracy {art.metrics.get('test', {}).get('accuracy')}; {results['seconds']:.0f} s in all")
    print(f"{'metric':<52} {'tamer':>9}  {'peer':<26} {'peer value':>10} {'ratio':>7}  {'goal':<8} pass")
    for r in rows:
        print(f"{r[0]:<52} {fmt(r[1]):>9}  {r[2]:<26} {fmt(r[3]):>10} {fmt(r[4]):>7}  {r[5]:<8} {'' if r[6] is None else ('yes' if r[6] else 'NO')}")
    if b:
        print(f"batch: IG {b['attr_batch_s']:.0f} s for {b['sentences']} sentences ({b['tokens_mean']:.1f} tokens on average), "
              f"Captum one per call {b['captum_one_by_one_s']:.0f} s for {b['captum_one_by_one_measured']}; word attributions "
              f"max |diff| {b['max_abs_diff_vs_captum']:.1e}. The verb: {b['verb_s']:.0f} s (completeness <= 1e-3 for "
              f"{100 * b['completeness_within_tolerance']:.1f}%, max steps {b['max_steps_used']}, accuracy {b['accuracy']:.3f})")
    if d:
        print(f"digits CNN test accuracy {d['accuracy']}")
    print(f"IG: Captum vs tamer word attributions max |diff| {ig['captum_vs_tamer_max_abs_diff']:.2e}; completeness "
          f"checked independently of Captum: {ig['completeness_error_independent']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
