"""SOLVER.AMP on the device at hand (lda_cls/precision.py), and a bf16 CPU run that learns as fp32 does."""
import json

import pytest
import torch

from lda_cls.precision import autocast_dtype_for, cpu_has_native_bf16

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, native", [("fpu sse avx512f avx512bw avx512_bf16", True),
                                           ("fpu sse amx_tile amx_bf16", True),
                                           ("fpu sse avx2 avx512f avx512bw avx512vl", False),
                                           ("fpu sse avx2", False)])
def test_native_bf16_is_read_off_the_x86_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_has_native_bf16(str(cpuinfo)) is native


def test_native_bf16_on_arm_and_without_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")
    assert cpu_has_native_bf16(str(cpuinfo))
    assert not cpu_has_native_bf16(str(tmp_path / "absent"))  # not Linux: fp32


def test_autocast_choice_and_the_line_the_log_gets():
    assert autocast_dtype_for("bf16", CPU, native_cpu_bf16=True) == (
        torch.bfloat16, "precision: bf16 autocast on the CPU (native bf16 arithmetic)")
    dtype, line = autocast_dtype_for("bf16", CPU, native_cpu_bf16=False)
    assert dtype is None and line.startswith("precision: fp32") and "no native bf16" in line
    assert autocast_dtype_for("fp16", CPU)[0] is None
    assert autocast_dtype_for("none", CPU, native_cpu_bf16=True)[0] is None
    assert autocast_dtype_for("fp16", torch.device("cuda"))[0] is torch.float16
    with pytest.raises(ValueError, match="SOLVER.AMP must be one of"):
        autocast_dtype_for("fp8", CPU)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16: runs fall back to fp32")
def test_bf16_and_fp32_runs_of_the_digits_demo_end_within_seed_noise(tmp_path):
    """Same data, seed and schedule; only SOLVER.AMP differs. Seed noise is measured here too: two fp32 seeds."""
    from lda_cls.train import main

    def top1(name, *opts):
        main(["--output-dir", str(tmp_path / name), "SOLVER.EPOCHS", "12", *opts])
        results = json.loads((tmp_path / name / "results.json").read_text())
        log = (tmp_path / name / "log.txt").read_text()
        return results["balanced"]["top1"], log

    bf16, bf16_log = top1("bf16", "SOLVER.AMP", "bf16")
    fp32, fp32_log = top1("fp32", "SOLVER.AMP", "none")
    fp32_seed1, _ = top1("fp32_seed1", "SOLVER.AMP", "none", "SEED", "1")
    assert "precision: bf16 autocast on the CPU" in bf16_log and "precision: fp32" in fp32_log
    assert bf16 != fp32  # bf16 did run: the arithmetic differs
    assert min(bf16, fp32) > 40.0  # both learn (10 classes: chance is 10)
    noise = abs(fp32 - fp32_seed1)
    assert abs(bf16 - fp32) <= max(2 * noise, 3.0), (bf16, fp32, fp32_seed1)
