"""A WordPiece vocabulary learned by byte-pair merges (Sennrich et al. 2016), the procedure of Hugging Face's
WordPieceTrainer for BERT's WordPiece model (Wu et al. 2016), from sorted counts only: the same words give the same
vocabulary in every process. Hugging Face's trainer numbers the continuation pieces (##x) in hash-map order and breaks
ties between equally frequent pairs by those numbers, so two runs on the same text gave different vocabularies."""
from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence

PREFIX = "##"  # marks a piece that continues a word


def alphabet(word_counts: Mapping[str, int], room: int, alone: Collection[str] = ()) -> list[str]:
    """Every character of the words, then each as a continuation piece (but those in `alone`, which the
    pre-tokenizer always makes a word of their own), so that any text made of them reads without [UNK]; when `room`
    cannot hold them all, the most frequent characters (ties by the character) keep theirs."""
    chars: dict[str, int] = {}
    for word, n in word_counts.items():
        for ch in word:
            chars[ch] = chars.get(ch, 0) + n
    kept: list[str] = []
    for ch in sorted(chars, key=lambda ch: (-chars[ch], ch)):
        room -= 1 if ch in alone else 2
        if room < 0:
            break
        kept.append(ch)
    kept.sort()
    return kept + [PREFIX + ch for ch in kept if ch not in alone]


def _merge(word: list[int], a: int, b: int, new: int) -> list[int]:
    out, j = [], 0
    while j < len(word):
        if j + 1 < len(word) and word[j] == a and word[j + 1] == b:
            out.append(new)
            j += 2
        else:
            out.append(word[j])
            j += 1
    return out


def wordpiece_vocab(word_counts: Mapping[str, int], vocab_size: int, special: Sequence[str],
                    max_chars: int = 100, alone: Collection[str] = ()) -> list[str]:
    """The tokens in id order: `special`, the alphabet, then the piece of each merge: the adjacent pair most frequent
    over `word_counts` first, ties to the pair of smaller ids (older pieces first, Hugging Face's rule), until there
    are `vocab_size` tokens or every word is one piece. Words over `max_chars` characters (which WordPiece reads as
    [UNK] whole) and words with a character left out of the alphabet take no part; see `alphabet` for `alone`."""
    tokens = list(dict.fromkeys(special))
    tokens += [t for t in alphabet(word_counts, vocab_size - len(tokens), alone) if t not in tokens]
    ids = {t: i for i, t in enumerate(tokens)}
    words = [w for w in sorted(word_counts)
             if len(w) <= max_chars and w[0] in ids and all(PREFIX + ch in ids for ch in w[1:])]
    symbols = [[ids[w[0]], *(ids[PREFIX + ch] for ch in w[1:])] for w in words]
    counts = [word_counts[w] for w in words]
    pair_count: dict[tuple[int, int], int] = {}
    pair_words: dict[tuple[int, int], set[int]] = {}
    for i, s in enumerate(symbols):
        for pair in zip(s, s[1:]):
            pair_count[pair] = pair_count.get(pair, 0) + counts[i]
            pair_words.setdefault(pair, set()).add(i)
    heap = [(-n, a, b) for (a, b), n in pair_count.items()]
    heapq.heapify(heap)  # a total order on (count, ids): which entry comes out never depends on insertion order
    while len(tokens) < vocab_size and heap:
        n, a, b = heapq.heappop(heap)
        if pair_count.get((a, b)) != -n:
            continue  # stale: the pair's count changed after this entry was pushed
        text = tokens[a] + tokens[b][len(PREFIX):]
        if text not in ids:  # a piece already spelled otherwise keeps its id
            ids[text] = len(tokens)
            tokens.append(text)
        new = ids[text]
        touched: set[tuple[int, int]] = set()
        for i in pair_words.pop((a, b)):
            old = symbols[i]
            if not any(x == a and y == b for x, y in zip(old, old[1:])):
                continue
            symbols[i] = merged = _merge(old, a, b, new)
            for pair in zip(old, old[1:]):
                pair_count[pair] -= counts[i]
                touched.add(pair)
            for pair in zip(merged, merged[1:]):
                pair_count[pair] = pair_count.get(pair, 0) + counts[i]
                pair_words.setdefault(pair, set()).add(i)
                touched.add(pair)
        for pair in touched:
            if pair_count[pair] > 0:
                heapq.heappush(heap, (-pair_count[pair], *pair))
            else:
                del pair_count[pair]
                pair_words.pop(pair, None)
    return tokens
