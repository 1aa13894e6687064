"""DefaultPreemption (PostFilter): when nothing fits, find nodes where evicting lower-priority Pods makes
room, keep as few victims as possible (reprieving the highest-priority ones first), and pick the node with
the lowest highest-victim priority, then the lowest priority sum, then the fewest victims. The message when
no node qualifies is upstream's: `preemption: 0/3 nodes are available: 1 No preemption victims found for
incoming pod, 2 Preemption is not helpful for scheduling.`"""
from __future__ import annotations

from ..framework import UNRESOLVABLE, Plugin, Status, histogram

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


class DefaultPreemption(Plugin):
    name = "DefaultPreemption"

    def post_filter(self, state, pod, cache, diagnosis, fw) -> str:
        if (pod.pod.get("spec") or {}).get("preemptionPolicy") == "Never":
            return "preemption: not eligible due to preemptionPolicy=Never"
        reasons: dict[str, Status] = {}
        candidates = []
        for name, st in diagnosis.node_status.items():
            ni = cache.nodes.get(name)
            if st.code == UNRESOLVABLE or ni is None:
                reasons[name] = Status(UNRESOLVABLE, [NOT_HELPFUL])
                continue
            lower = sorted((p for p in ni.pods.values() if p.priority < pod.priority), key=lambda p: -p.priority)
            if not lower:
                reasons[name] = Status(st.code, [NO_VICTIMS])
                continue
            sim = ni.clone()
            for v in lower:
                sim.remove_pod(v.uid)
            if not fw.run_filters(state, pod, sim).ok:
                reasons[name] = Status(st.code, [NO_VICTIMS])
                continue
            victims = []
            for v in lower:   # reprieve as many as possible, highest priority first
                sim.add_pod(v)
                if not fw.run_filters(state, pod, sim).ok:
                    sim.remove_pod(v.uid)
                    victims.append(v)
            candidates.append((name, victims))
        if not candidates:
            return f"preemption: 0/{len(cache.order)} nodes are available: {histogram(reasons)}"
        candidates.sort(key=lambda c: (max(v.priority for v in c[1]) if c[1] else -2**31, sum(v.priority for v in c[1]), len(c[1])))
        state["preemption"] = candidates[0]
        return ""
