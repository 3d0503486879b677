"""The machine facts that every timed result records."""

from __future__ import annotations

import torch
from torchwm.agents.machine import machine_facts


def test_machine_facts_measure_both_thread_settings_and_restore_the_current_one() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        facts = machine_facts(threads=2)
        assert torch.get_num_threads() == 1  # measured at 1 and 2 threads, left as it was
    finally:
        torch.set_num_threads(before)
    assert facts["matmul_gflop_s_1_thread"] > 0 and facts["matmul_gflop_s_2_threads"] > 0
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and facts["cpu"]
    assert facts["cores"] >= 1 and facts["torch"] == torch.__version__
