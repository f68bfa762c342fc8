"""KEY=VALUE overrides are parsed by each field's declared type; bad ones name the field and what fits."""

import pytest

from rayfold.cli import main
from rayfold.cluster.rules import ClusterConfig
from rayfold.config import FragmentConfig, RunConfig, with_overrides
from rayfold.model.errors import InputError


def test_overrides_follow_the_declared_types():
    config = with_overrides(FragmentConfig(), {"scaled_connectivity_threshold": "None", "remerge": "off",
                                               "knn_k": "12", "sigma": "7", "solver": "dense"})
    assert (config.scaled_connectivity_threshold, config.remerge, config.knn_k, config.sigma, config.solver) == (
        None, False, 12, 7.0, "dense")
    assert isinstance(config.knn_k, int) and isinstance(config.sigma, float)
    assert with_overrides(RunConfig(), {"num_workers": "4"}).num_workers == 4
    assert with_overrides(RunConfig(), {"num_workers": "none"}).num_workers is None
    assert with_overrides(ClusterConfig(), {"linkage": "method"}).linkage == "method"


@pytest.mark.parametrize("override, message", [
    ({"remerge": "flase"}, "remerge='flase': expected a boolean"),
    ({"knn_k": "4.5"}, "knn_k='4.5': expected an integer"),
    ({"solver": "dens"}, "expected one of sparse, dense"),
    ({"scaled_connectivity_threshold": "off"}, "expected a number or none"),
    ({"plddt_cutof": "70"}, "unknown setting 'plddt_cutof' for FragmentConfig"),
])
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(InputError, match="bad_setting") as caught:
        with_overrides(FragmentConfig(), override)
    assert message in str(caught.value)


def test_choice_fields_refuse_near_misses():
    for key, value in (("foldseek_node", "alway"), ("linkage", "complete"), ("engine", "fold_seek")):
        with pytest.raises(InputError, match=f"{key}='{value}': expected one of"):
            with_overrides(ClusterConfig(), {key: value})


def test_cli_reports_a_bad_setting_in_one_line(tmp_path, capsys):
    assert main(["fragment", "in", "--out", str(tmp_path / "o"), "--set", "remerge=flase"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "rayfold: error: bad_setting: remerge='flase': expected a boolean (1/true/yes/on or 0/false/no/off)"
    assert main(["fragment", "in", "--out", str(tmp_path / "o"), "--set", "remerge"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
