"""The sidebar's executor panel: where runs train (this machine, or a Ray cluster with its
nodes, CPUs and GPUs) and how many runs are running where.

This module owns that panel only. Counts come from the store (a run trained on Ray stores
its device as "cpu@NODE-IP", engine.executors.node_of), so runs started by the CLI count too;
the cluster's resources come from the process's Ray executor, which connects on first use.
"""

from __future__ import annotations

import os

import streamlit as st

from engine.events import RunStatus
from engine.executors import RAY_ADDRESS_ENV, ExecutorError, executor_from_env, node_of


def running_where(records) -> dict[str, int]:
    """Running runs per place: 'this machine' or a node's ip (from the stored device)."""
    counts: dict[str, int] = {}
    for r in records:
        if r.status != RunStatus.RUNNING:
            continue
        executor, node = node_of(r.device)
        place = node if executor == "ray" else "this machine"
        counts[place] = counts.get(place, 0) + 1
    return counts


def ray_configured() -> bool:
    """True when runs go to a Ray cluster ($TRAINLAB_RAY_ADDRESS is set)."""
    return bool(os.environ.get(RAY_ADDRESS_ENV, "").strip())


def executor_panel_ui(store) -> None:
    """Which executor, the cluster's nodes, CPUs and GPUs, and runs running per node."""
    where = running_where(store.list_runs())
    if not ray_configured():
        st.caption("Executor: **local** (worker threads on this machine)")
        return
    try:
        info = executor_from_env().describe()
    except ExecutorError as error:
        st.error(f"Ray: {error}", icon=":material/cloud_off:")
        return
    st.caption(f"Executor: **Ray** at `{info['address']}` · {len(info['nodes'])} node(s) · "
               f"{info['cpus']:g} CPUs · {info['gpus']:g} GPUs")
    lines = [f"- `{n['node']}`: {n['cpus']:g} CPUs, {n['gpus']:g} GPUs, "
             f"{where.pop(n['node'], 0)} running" for n in info["nodes"]]
    lines += [f"- {place}: {count} running" for place, count in where.items()]
    st.markdown("\n".join(lines))


def executor_fault_ui(error: Exception) -> None:
    """The page when the job manager cannot start because its Ray cluster cannot be used
    (unreachable, or refused: it requires no authentication): one message naming the address
    and the fix, never a traceback; nothing was launched."""
    st.error(f"**Train Lab cannot use its Ray cluster.** {error}", icon=":material/cloud_off:")
    st.caption(f"Nothing was launched. Fix that (or unset {RAY_ADDRESS_ENV} to train "
               "on this machine), then reload this page.")
