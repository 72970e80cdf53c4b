"""How far the test predictions of the runs of one experiment agree, pair by pair, computed one way.

`AgreementMatrix` reads each run's predictions once and counts, for every pair
at once, the images both put in the same class and (where the record proves
which test images it used) the images each got right and the other wrong: the
discordant counts McNemar's test needs. Reruns share their predictions, so the
work is done once per distinct prediction vector and spread out.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from results.loaders import LoadedRun


@dataclasses.dataclass
class Agreement:
    """How far two runs' test predictions agree; counts are None where they cannot be known (see note)."""

    n: int | None = None
    same_class: int | None = None
    a_right_b_wrong: int | None = None
    b_right_a_wrong: int | None = None
    both_right: int | None = None
    note: str | None = None

    @property
    def share(self) -> float | None:
        return self.same_class / self.n if self.n and self.same_class is not None else None

    @property
    def discordant(self) -> tuple[int, int] | None:
        """(A right & B wrong, B right & A wrong), when known."""
        if self.a_right_b_wrong is None or self.b_right_a_wrong is None:
            return None
        return self.a_right_b_wrong, self.b_right_a_wrong


# truth(i, n) -> (the first n test labels run i was scored on, or None and why)
Truth = Callable[[int, int], "tuple[np.ndarray | None, str | None]"]


class AgreementMatrix:
    """Agreement of every pair of `runs`, counted once for all pairs when first asked."""

    def __init__(self, runs: Sequence[LoadedRun], labels: Sequence[str], truth: Truth):
        self._runs, self._labels, self._truth_of = runs, labels, truth
        self._filled = False

    def fill(self) -> None:
        if self._filled:
            return
        k = len(self._runs)
        self.predictions = [read_predictions(r) for r in self._runs]
        self.truth: list[tuple[np.ndarray | None, str | None]] = [(None, None)] * k
        self.same = np.full((k, k), -1, dtype=np.int64)
        self.right_wrong = np.full((k, k), -1, dtype=np.int64)  # [i, j]: i right where j is wrong
        self.both_right = np.full((k, k), -1, dtype=np.int64)
        by_length: dict[int, list[int]] = {}
        for i, (p, _) in enumerate(self.predictions):
            if p is not None:
                by_length.setdefault(len(p), []).append(i)
        for n, members in by_length.items():
            distinct, inverse = distinct_rows(np.stack([self.predictions[i][0] for i in members]))
            self.same[np.ix_(members, members)] = same_class_counts(distinct)[np.ix_(inverse, inverse)]
            with_labels, rows, truth = [], [], None
            for m, i in enumerate(members):  # records that prove their data hold the same first-n labels
                self.truth[i] = self._truth_of(i, n)
                if self.truth[i][0] is not None:
                    with_labels.append(i)
                    rows.append(inverse[m])
                    truth = self.truth[i][0]
            if with_labels:
                right = distinct == truth
                both = both_true_counts(right)
                cells = np.ix_(with_labels, with_labels)
                self.both_right[cells] = both[np.ix_(rows, rows)]
                self.right_wrong[cells] = (right.sum(1)[:, None] - both)[np.ix_(rows, rows)]
        self._filled = True

    def pair(self, i: int, j: int) -> Agreement:
        self.fill()
        (pa, note_a), (pb, note_b) = self.predictions[i], self.predictions[j]
        for label, p, note in ((self._labels[i], pa, note_a), (self._labels[j], pb, note_b)):
            if p is None:
                return Agreement(note=f"{label}: {note}")
        if len(pa) != len(pb):
            return Agreement(note=f"{self._labels[i]} has {len(pa)} test predictions and {self._labels[j]} "
                                  f"{len(pb)}: not the same test images, agreement not measured")
        agreement = Agreement(n=len(pa), same_class=int(self.same[i, j]))
        if self.right_wrong[i, j] >= 0:
            agreement.a_right_b_wrong = int(self.right_wrong[i, j])
            agreement.b_right_a_wrong = int(self.right_wrong[j, i])
            agreement.both_right = int(self.both_right[i, j])
        else:
            who = i if self.truth[i][0] is None else j
            agreement.note = f"right/wrong counts not known: {self._labels[who]}: {self.truth[who][1]}"
        return agreement


def distinct_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of a 2-D array, in first-seen order; each row's index into them)."""
    seen: dict[bytes, int] = {}
    inverse = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in block], dtype=np.intp)
    first = np.unique(inverse, return_index=True)[1]
    return block[first], inverse


def same_class_counts(predictions: np.ndarray) -> np.ndarray:
    """[i, j] = how many images runs i and j put in the same class; predictions is (runs, images).

    No loop over pairs of images: agreement with the per-image majority class,
    plus agreement among the few (image, class) entries that leave the majority.
    """
    classes = int(predictions.max()) + 1 if predictions.size else 1
    votes = np.stack([(predictions == c).sum(0) for c in range(classes)])
    agree = predictions == votes.argmax(0)
    same = both_true_counts(agree)
    run, image = np.nonzero(~agree)
    if run.size:
        entries, column = np.unique(image * classes + predictions[run, image], return_inverse=True)
        off = np.zeros((len(predictions), len(entries)), dtype=bool)
        off[run, column.ravel()] = True
        same += both_true_counts(off)
    return same


def both_true_counts(mask: np.ndarray) -> np.ndarray:
    """[i, j] = in how many columns rows i and j of a boolean matrix are both true.

    Packed into 64-bit words and popcounted: no BLAS, whose worker threads
    spin for longer than these small products take on a busy machine.
    """
    packed = np.packbits(mask, axis=1)
    packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
    words = np.ascontiguousarray(packed).view(np.uint64)
    counts = np.empty((len(words), len(words)), dtype=np.int64)
    for i, row in enumerate(words):
        counts[i] = np.bitwise_count(row & words).sum(1)
    return counts


def read_predictions(loaded: LoadedRun) -> tuple[np.ndarray | None, str | None]:
    """(one class per test image as uint8, or None and why)."""
    try:
        p = loaded.predictions()
    except (OSError, ValueError, EOFError) as e:
        return None, f"unreadable predictions.npy ({type(e).__name__}: {first_line(e)})"
    if p is None:
        return None, "no predictions file in the record"
    if p.ndim != 1 or not np.issubdtype(p.dtype, np.integer) or (
            p.dtype != np.uint8 and p.size and (p.min() < 0 or p.max() > 255)):
        return None, f"predictions.npy is {p.dtype}{list(p.shape)}, not one class per test image"
    return p.astype(np.uint8, copy=False), None


def first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else ""
