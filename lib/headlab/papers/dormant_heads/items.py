"""Generated multiple-choice items (deterministic)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ...data import MCItem

# --------------------------------------------------------------------------------------------
# generated multiple-choice items (deterministic)
# --------------------------------------------------------------------------------------------

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "table",
    "horse",
    "paper",
    "green",
    "music",
    "chair",
    "bread",
    "light",
    "water",
    "glass",
    "tiger",
    "house",
    "ocean",
    "pencil",
    "garden",
    "window",
    "candle",
    "forest",
    "bottle",
    "rabbit",
    "silver",
    "jacket",
    "planet",
    "mirror",
    "orange",
    "ladder",
]
# (prompt, answer, three distractors): facts and word relations a small LM has seen many times
CLOZE = [
    ("The opposite of hot is", "cold", ["blue", "fast", "tall"]),
    ("The opposite of up is", "down", ["red", "cat", "soft"]),
    ("The opposite of big is", "small", ["green", "loud", "happy"]),
    ("The opposite of day is", "night", ["tree", "shoe", "cup"]),
    ("The opposite of yes is", "no", ["car", "sky", "ten"]),
    ("The opposite of left is", "right", ["bread", "nose", "blue"]),
    ("The sun rises in the", "east", ["table", "river", "spoon"]),
    ("Water freezes at zero degrees", "Celsius", ["Monday", "apple", "guitar"]),
    ("The capital of France is", "Paris", ["banana", "Tuesday", "window"]),
    ("The capital of Japan is", "Tokyo", ["pencil", "winter", "garden"]),
    ("The capital of Italy is", "Rome", ["chair", "summer", "rabbit"]),
    ("A week has seven", "days", ["trees", "cars", "songs"]),
    ("A year has twelve", "months", ["dogs", "chairs", "lamps"]),
    ("Cats and dogs are", "animals", ["numbers", "colors", "tools"]),
    ("Red, blue and green are", "colors", ["animals", "cities", "verbs"]),
    ("Bread is made from", "flour", ["glass", "metal", "paper"]),
    ("Cows give us", "milk", ["wood", "steel", "sand"]),
    ("Bees make", "honey", ["bricks", "paper", "glass"]),
    ("The sky is", "blue", ["wooden", "square", "salty"]),
    ("Grass is", "green", ["purple", "frozen", "metal"]),
    ("Ice is frozen", "water", ["bread", "paper", "music"]),
    ("We see with our", "eyes", ["feet", "knees", "elbows"]),
    ("We hear with our", "ears", ["hands", "toes", "teeth"]),
    ("Birds can", "fly", ["read", "cook", "drive"]),
    ("Fish live in", "water", ["trees", "clouds", "books"]),
    ("Two plus two equals", "four", ["seven", "nine", "twelve"]),
    ("The first letter of the alphabet is", "A", ["Q", "M", "Z"]),
    ("Christmas is celebrated in", "December", ["April", "July", "March"]),
    ("A baby cat is called a", "kitten", ["puppy", "calf", "foal"]),
    ("Snow is", "white", ["black", "orange", "purple"]),
]
MC_KINDS = ("count", "days", "months", "letters", "copy", "cloze")
# kinds with hundreds of distinct prompts each, for item sets in the thousands (the six above repeat: "days" has 7
# prompts, "cloze" 30); opt-in (notebook 01's ``mc_kinds``), so the default item set is unchanged
EXTRA_KINDS = ("arith", "countdown", "alternate")


def generated_mc(n_per_kind: int, seed: int = 0, kinds: Sequence[str] = MC_KINDS) -> list[MCItem]:
    """Deterministic 4-way multiple choice: number sequences, days, months, letters, copying a
    random word list (induction), and short cloze facts; with ``EXTRA_KINDS``, also two-number sums, descending
    sequences and alternating word pairs. Choices are single words with a space."""
    rng = random.Random(seed)
    items: list[MCItem] = []
    cloze_order: list[int] = []

    def add(prompt, answer, distractors, kind):
        ch = [answer] + list(distractors)
        order = list(range(4))
        rng.shuffle(order)
        choices = tuple(" " + ch[i] for i in order)
        items.append(MCItem(prompt, choices, order.index(0), kind))

    for kind in kinds:
        for _ in range(n_per_kind):
            if kind == "count":
                step = rng.choice([1, 2, 5, 10])
                start = rng.randint(1, 12) * step
                seq = [start + i * step for i in range(5)]
                nxt = seq[-1] + step
                pool = sorted({nxt + step, nxt - 1, nxt + 1, seq[-1], seq[0], nxt + 2 * step} - {nxt})
                add(", ".join(map(str, seq)) + ",", str(nxt), [str(d) for d in rng.sample(pool, 3)], kind)
            elif kind in ("days", "months", "letters"):
                names = DAYS if kind == "days" else MONTHS if kind == "months" else [chr(65 + i) for i in range(26)]
                k = 4 if kind == "letters" else 3
                i0 = rng.randrange(len(names) - k if kind == "letters" else len(names))
                shown = [names[(i0 + j) % len(names)] for j in range(k)]
                ans = names[(i0 + k) % len(names)]
                pool = [x for x in names if x != ans and x not in shown]
                add(", ".join(shown) + ",", ans, rng.sample(pool, 3), kind)
            elif kind == "copy":
                ws = rng.sample(WORDS, 6)
                cut = rng.randint(2, 4)
                prompt = ", ".join(ws) + ". " + ", ".join(ws[:cut]) + ","
                ans = ws[cut]
                pool = [w for w in ws if w != ans]
                add(prompt, ans, rng.sample(pool, 3), kind)
            elif kind == "cloze":
                if not cloze_order:
                    cloze_order = rng.sample(range(len(CLOZE)), len(CLOZE))
                pr, ans, ds = CLOZE[cloze_order.pop()]
                add(pr, ans, ds, kind)
            elif kind == "arith":
                a, b = rng.randint(1, 20), rng.randint(1, 20)
                pool = sorted({a + b - 2, a + b - 1, a + b + 1, a + b + 2, a + b + 10, a * b} - {a + b})
                add(f"{a} + {b} =", str(a + b), [str(d) for d in rng.sample(pool, 3)], kind)
            elif kind == "countdown":
                step = rng.choice([1, 2, 3, 4, 5, 10])
                end = rng.randint(1, 99)
                seq = [end + (5 - i) * step for i in range(5)]
                nxt = end
                pool = sorted({nxt - step, nxt + 1, nxt - 1, seq[-1], seq[0], nxt + 2 * step} - {nxt})
                add(", ".join(map(str, seq)) + ",", str(nxt), [str(d) for d in rng.sample(pool, 3)], kind)
            elif kind == "alternate":
                w1, w2, *others = rng.sample(WORDS, 5)
                k = rng.randint(3, 6)
                shown = [(w1, w2)[j % 2] for j in range(k)]
                add(", ".join(shown) + ",", (w1, w2)[k % 2], [(w1, w2)[(k + 1) % 2], *others[:2]], kind)
            else:
                raise ValueError(f"unknown item kind {kind!r}; known: {MC_KINDS + EXTRA_KINDS}")
    return items
