"""The FPGA target catalogue: data-sheet numbers, name resolution, the `targets` command."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from codesign.backends.targets import RESOURCE_KEYS, UnknownTargetError, get_target, list_targets
from codesign.cli import app

REQUIRED = ("vu13p", "vu9p", "u50", "u55c", "u200", "u250", "u280", "zcu102", "zcu104", "pynq-z2", "kv260")


def test_catalogue_has_every_required_target_with_all_resources():
    names = {t.name for t in list_targets()}
    assert set(REQUIRED) <= names
    for t in list_targets():
        assert set(RESOURCE_KEYS) <= set(t.resources), t.name
        assert t.resources["LUT"] > 0 and t.resources["DSP"] > 0 and t.default_clock_ns > 0
        assert t.part.startswith("xc") and t.backends


@pytest.mark.parametrize(
    "name, part, lut, ff, dsp, bram18, uram",
    [
        # Virtex UltraScale+ VU13P (DS890): 1,728K LUTs, 3,456K FFs, 12,288 DSPs, 2,688 BRAM36, 1,280 URAM
        ("vu13p", "xcvu13p-flga2577-2-e", 1_728_000, 3_456_000, 12_288, 5_376, 1_280),
        # Zynq-7020 (DS190): 53,200 LUTs, 106,400 FFs, 220 DSPs, 140 BRAM36, no URAM
        ("pynq-z2", "xc7z020clg400-1", 53_200, 106_400, 220, 280, 0),
        # ZU9EG (DS891): 274,080 LUTs, 548,160 FFs, 2,520 DSPs, 912 BRAM36
        ("zcu102", "xczu9eg-ffvb1156-2-e", 274_080, 548_160, 2_520, 1_824, 0),
        # Alveo U250 = VU13P die
        ("u250", "xcu250-figd2104-2L-e", 1_728_000, 3_456_000, 12_288, 5_376, 1_280),
    ],
)
def test_data_sheet_numbers(name, part, lut, ff, dsp, bram18, uram):
    t = get_target(name)
    assert t.part == part
    assert t.resources == {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM_18K": bram18, "URAM": uram}


def test_aliases_and_full_part_names_resolve():
    assert get_target("xcvu13p-flga2577-2-e").name == "vu13p"
    assert get_target("XCVU13P-FLGA2577-2-E").name == "vu13p"
    assert get_target("alveo-u250").name == "u250"
    assert get_target("KV260_SOM").name == "kv260"
    assert get_target("Pynq-Z2").finn_board == "Pynq-Z2"
    # same die, other package/speed grade: that die's resources, the given part
    other = get_target("xcvu9p-flgb2104-2-i")
    assert other.part == "xcvu9p-flgb2104-2-i" and other.resources["DSP"] == 6_840 and other.finn_board is None


def test_unknown_target_is_one_clear_error():
    with pytest.raises(UnknownTargetError, match="unknown target 'vu99p'.*vu13p"):
        get_target("vu99p")


def test_targets_command_lists_json():
    result = CliRunner().invoke(app, ["targets", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["vu13p"]["part"] == "xcvu13p-flga2577-2-e"
    assert data["zcu104"]["resources"]["URAM"] == 96
    assert data["u280"]["shell_flow_type"] == "vitis_alveo"


def test_targets_command_table():
    result = CliRunner().invoke(app, ["targets"])
    assert result.exit_code == 0
    assert "xcvu13p-flga2577-2-e" in result.output and "12,288" in result.output
