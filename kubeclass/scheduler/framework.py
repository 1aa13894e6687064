"""The scheduling framework: extension points as upstream (PreFilter, Filter, PostFilter, PreScore, Score
with NormalizeScore, Reserve, Permit, Bind), one scheduling cycle over the node cache, and the
unschedulable message as upstream 1.32's FitError prints it:
`0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: ...`.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

import numpy as np

from .nodeinfo import Cache, NodeInfo, PodInfo

SUCCESS, UNSCHEDULABLE, UNRESOLVABLE, ERROR, SKIP = "Success", "Unschedulable", "UnschedulableAndUnresolvable", "Error", "Skip"
MAX_NODE_SCORE = 100


@dataclass
class Status:
    code: str
    reasons: list[str] = field(default_factory=list)
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS


def unschedulable(*reasons: str) -> Status:
    return Status(UNSCHEDULABLE, list(reasons))


def unresolvable(*reasons: str) -> Status:
    return Status(UNRESOLVABLE, list(reasons))


class CycleState(dict):
    """Per-attempt data plugins share (PreFilter results read by Filter, etc.)."""


class Plugin:
    name = ""

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return 0

    def normalize(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        return None

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        return None

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        return None

    def permit(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        return None


def default_normalize(scores: dict[str, int], reverse: bool = False) -> None:
    """helper.DefaultNormalizeScore: scale to 0..100 by the maximum (reversed: 100 - scaled)."""
    top = max(scores.values(), default=0)
    if top == 0:
        if reverse:
            for k in scores:
                scores[k] = MAX_NODE_SCORE
        return
    for k, v in scores.items():
        s = v * MAX_NODE_SCORE // top
        scores[k] = MAX_NODE_SCORE - s if reverse else s


def default_normalize_vector(v: np.ndarray, reverse: bool = False) -> np.ndarray:
    top = int(v.max()) if len(v) else 0
    if top == 0:
        return np.full(len(v), MAX_NODE_SCORE, np.int64) if reverse else v.astype(np.int64)
    s = v.astype(np.int64) * MAX_NODE_SCORE // top
    return MAX_NODE_SCORE - s if reverse else s


@dataclass
class Diagnosis:
    node_status: dict[str, Status] = field(default_factory=dict)
    pre_filter: Status | None = None
    post_filter_msg: str = ""


@dataclass
class PodClass:
    """What the vector path knows about every node for one kind of Pod (see Framework._schedule_vector)."""
    mask: np.ndarray    # feasible, per node row
    score: np.ndarray   # weighted sum of the separable score plugins, per node row
    seen: int           # how much of NodeTable.dirty is already applied


class FitError(Exception):
    def __init__(self, pod: PodInfo, num_nodes: int, diagnosis: Diagnosis):
        self.pod, self.num_nodes, self.diagnosis = pod, num_nodes, diagnosis
        super().__init__(self.message())

    def message(self) -> str:
        if self.num_nodes == 0:
            return "no nodes available to schedule pods"   # upstream's ErrNoNodesAvailable
        d = self.diagnosis
        msg = f"0/{self.num_nodes} nodes are available:"
        if d.pre_filter is not None and d.pre_filter.reasons:
            msg += " " + ", ".join(d.pre_filter.reasons) + "."
        if d.node_status:
            msg += " " + histogram(d.node_status) + "."
        if d.post_filter_msg:
            msg += " " + d.post_filter_msg + "."
        return msg


def histogram(node_status: dict[str, Status]) -> str:
    counts: dict[str, int] = {}
    for st in node_status.values():
        for r in st.reasons:
            counts[r] = counts.get(r, 0) + 1
    return ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))


@dataclass
class Result:
    node: str
    evaluated: int
    feasible: int
    scores: dict[str, dict[str, int]] = field(default_factory=dict)    # node -> plugin -> weighted score
    verdicts: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> plugin -> reason or "passed"


def num_feasible_to_find(num_nodes: int, percentage: int = 0) -> int:
    """numFeasibleNodesToFind: all nodes below 100, else an adaptive share (50% - n/125, at least 5%), at
    least 100 nodes."""
    if num_nodes < 100 or percentage >= 100:
        return num_nodes
    pct = percentage
    if pct <= 0:
        pct = max(50 - num_nodes // 125, 5)
    n = num_nodes * pct // 100
    return max(n, 100)


class Framework:
    def __init__(self, filters: list[Plugin], scorers: list[tuple[Plugin, int]], pre_filters: list[Plugin] | None = None,
                 post_filters: list[Plugin] | None = None, reservers: list[Plugin] | None = None,
                 permits: list[Plugin] | None = None, percentage_of_nodes_to_score: int = 0):
        self.filters = filters
        self.scorers = scorers
        self.pre_filters = pre_filters if pre_filters is not None else filters
        self.post_filters = post_filters or []
        self.reservers = reservers or []
        self.permits = permits or []
        self.percentage = percentage_of_nodes_to_score
        self._next_start = 0

    def run_filters(self, state: CycleState, pod: PodInfo, node: NodeInfo, verdicts: dict | None = None) -> Status:
        for p in self.filters:
            st = p.filter(state, pod, node)
            if st is not None and not st.ok:
                st.plugin = p.name
                if verdicts is not None:
                    verdicts[p.name] = ", ".join(st.reasons)
                return st
            if verdicts is not None:
                verdicts[p.name] = "passed"
        return Status(SUCCESS)

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        for p in self.pre_filters:
            st = p.pre_filter(state, pod)
            if st is not None and not st.ok:
                st.plugin = p.name
                return st
        return None

    @functools.cached_property
    def vectorized(self) -> bool:
        return all(hasattr(p, "filter_vector") for p in self.filters) and all(hasattr(p, "score_vector") for p, _ in self.scorers)

    @functools.cached_property
    def _score_split(self) -> tuple[list, list]:
        """The score plugins whose per-node scores a PodClass can keep (separable) and the others."""
        sep = [(p, w) for p, w in self.scorers if getattr(p, "separable", False)]
        return sep, [(p, w) for p, w in self.scorers if not getattr(p, "separable", False)]

    def schedule(self, cache: Cache, pod: PodInfo, explain: bool = False, rng: random.Random | None = None) -> tuple[CycleState, Result]:
        """One scheduling cycle up to host selection. Raises FitError (after PostFilter) when nothing fits."""
        if not explain and self.vectorized and cache.table.n:
            fast = self._schedule_vector(cache, pod, rng)
            if fast is not None:
                return fast
        return self._schedule_nodes(cache, pod, explain, rng)

    def _schedule_vector(self, cache: Cache, pod: PodInfo, rng: random.Random | None) -> tuple[CycleState, Result] | None:
        """The same cycle on the columnar table. As upstream, nodes are visited from a start index that
        rotates over the cluster until numFeasibleNodesToFind feasible ones are found (all of them with
        --percentage-of-nodes-to-score 100), and only those are scored.

        Pods alike for every plugin (same requests, tolerations, selectors, handler, ports: a `PodClass`)
        share a whole-cluster feasibility mask and sum of per-node scores, brought up to date only on the
        rows whose pods changed since the class was last scheduled; a workload of alike Pods then pays
        for a few rows per cycle. Returns None when nothing fits, so the per-node path can build the
        diagnosis with each node's reasons."""
        state = CycleState()
        if self.pre_filter(state, pod) is not None:
            return None
        table = cache.table
        n = table.n
        pc = self._pod_class(state, pod, table)
        if pc is not None:
            def feasible(rows):
                return pc.mask[rows]
        else:
            def feasible(rows):
                return self._filter_rows(state, pod, table, rows)
        want = num_feasible_to_find(n, self.percentage)
        start = self._next_start % n
        chunk = max(want + want // 4, 256)
        found: list[np.ndarray] = []
        count = scanned = 0
        pos = start
        evaluated = n
        while scanned < n:
            end = min(pos + chunk, n, pos + n - scanned)
            mask = feasible(slice(pos, end))
            hits = np.arange(pos, end) if mask is None else np.flatnonzero(mask) + pos
            if count + len(hits) >= want:
                hits = hits[: want - count]
                found.append(hits)
                count = want
                evaluated = (int(hits[-1]) - start) % n + 1
                break
            if len(hits):
                found.append(hits)
                count += len(hits)
            scanned += end - pos
            pos = end % n
        if not count:
            return None
        idx = found[0] if len(found) == 1 else np.concatenate(found)
        self._next_start = (start + evaluated) % n
        result = Result("", evaluated, count)
        if count == 1:
            result.node = table.names[int(idx[0])]
            return state, result
        if pc is not None:
            total = pc.score[idx]
            scorers = self._score_split[1]
        else:
            total = np.zeros(count, np.int64)
            scorers = self.scorers
        for p, weight in scorers:
            s = p.score_vector(state, pod, table, idx)   # type: ignore[attr-defined]
            if not isinstance(s, int):   # an int: the same score for every node, which changes no choice
                total += weight * s
        best = np.flatnonzero(total == total.max())
        pick = int(best[0]) if len(best) == 1 else int(best[(rng or random).randrange(len(best))])
        result.node = table.names[int(idx[pick])]
        return state, result

    def _filter_rows(self, state: CycleState, pod: PodInfo, table, rows) -> np.ndarray | None:
        """Every filter over some rows (a slice or an index array): the feasible mask, None if all pass."""
        mask = None
        for p in self.filters:
            m = p.filter_vector(state, pod, table, rows)   # type: ignore[attr-defined]
            if m is not None:
                mask = m if mask is None else mask & m
        return mask

    def _separable_scores(self, state: CycleState, pod: PodInfo, table, rows) -> np.ndarray:
        total = np.zeros(len(rows), np.int64)
        for p, weight in self._score_split[0]:
            total += weight * p.score_vector(state, pod, table, rows)   # type: ignore[attr-defined]
        return total

    def _pod_class(self, state: CycleState, pod: PodInfo, table) -> PodClass | None:
        keys = []
        for p in self.filters:
            fk = getattr(p, "filter_key", None)
            if fk is None:
                return None   # a plugin that cannot say which pods it treats alike: no sharing
            keys.append(fk(state, pod))
        for p, _ in self._score_split[0]:
            keys.append(p.score_key(state, pod))   # type: ignore[attr-defined]
        key = tuple(keys)
        pc = table.pod_classes.get(key)
        if pc is None:
            rows = np.arange(table.n)   # an index array: the masks come back as copies the class may own
            mask = self._filter_rows(state, pod, table, rows)
            pc = PodClass(np.ones(table.n, bool) if mask is None else mask,
                          self._separable_scores(state, pod, table, rows), len(table.dirty))
            table.pod_classes[key] = pc
        elif pc.seen < len(table.dirty):
            rows = set(table.dirty[pc.seen:])
            pc.seen = len(table.dirty)
            if len(rows) <= 16:   # a few rows: node by node is cheaper than numpy calls
                separable = self._score_split[0]
                for i in rows:
                    ni = table.nodes[i]
                    pc.mask[i] = self.run_filters(state, pod, ni).ok
                    pc.score[i] = sum(w * p.score(state, pod, ni) for p, w in separable)
            else:
                ids = np.fromiter(rows, np.int64)
                mask = self._filter_rows(state, pod, table, ids)
                pc.mask[ids] = True if mask is None else mask
                pc.score[ids] = self._separable_scores(state, pod, table, ids)
        return pc

    def _schedule_nodes(self, cache: Cache, pod: PodInfo, explain: bool = False, rng: random.Random | None = None) -> tuple[CycleState, Result]:
        state = CycleState()
        names = cache.order
        n = len(names)
        diagnosis = Diagnosis()
        if n == 0:
            raise FitError(pod, 0, diagnosis)
        st = self.pre_filter(state, pod)
        if st is not None:
            diagnosis.pre_filter = st
            raise FitError(pod, n, diagnosis)
        want = n if explain else num_feasible_to_find(n, self.percentage)
        feasible: list[NodeInfo] = []
        verdicts: dict[str, dict[str, str]] = {}
        start = self._next_start % n
        evaluated = 0
        for i in range(n):
            ni = cache.nodes[names[(start + i) % n]]
            evaluated += 1
            v = {} if explain else None
            st = self.run_filters(state, pod, ni, v)
            if explain:
                verdicts[ni.name] = v
            if st.ok:
                feasible.append(ni)
                if len(feasible) >= want:
                    break
            else:
                diagnosis.node_status[ni.name] = st
        self._next_start = (start + evaluated) % n
        if not feasible:
            for p in self.post_filters:
                msg = p.post_filter(state, pod, cache, diagnosis, self)   # type: ignore[attr-defined]
                if msg:
                    diagnosis.post_filter_msg = msg
            err = FitError(pod, n, diagnosis)
            err.verdicts = verdicts  # type: ignore[attr-defined]
            err.state = state  # type: ignore[attr-defined]
            raise err
        result = Result("", evaluated, len(feasible), verdicts=verdicts)
        if len(feasible) == 1 and not explain:
            result.node = feasible[0].name
            return state, result
        totals = self.score(state, pod, feasible, result)
        best = max(totals.values())
        choices = [k for k, v in totals.items() if v == best]
        result.node = choices[0] if len(choices) == 1 else (rng or random).choice(choices)
        return state, result

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], result: Result) -> dict[str, int]:
        totals = {ni.name: 0 for ni in nodes}
        for p, weight in self.scorers:
            p.pre_score(state, pod, nodes)
            scores = {ni.name: p.score(state, pod, ni) for ni in nodes}
            p.normalize(state, pod, scores)
            for k, v in scores.items():
                totals[k] += v * weight
                result.scores.setdefault(k, {})[p.name] = v * weight
        return totals

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        for i, p in enumerate(self.reservers):
            st = p.reserve(state, pod, node)
            if st is not None and not st.ok:
                for q in reversed(self.reservers[:i + 1]):
                    q.unreserve(state, pod, node)
                return st
        return None

    def permit(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        for p in self.permits:
            st = p.permit(state, pod, node)
            if st is not None and not st.ok:
                return st
        return None


