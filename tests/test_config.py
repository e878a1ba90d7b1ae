import pytest

from flows.config import ConfigError, load_config


def test_defaults_file_and_overrides(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[seeding]\nsensors_per_bin = 5\nbin_size = 8\nupsampling = 4\n[stores]\nraw = "r.zarr"\n')
    cfg = load_config(cfg_file, {"seeding.bin_size": 16, "stores.seedings": None})
    assert cfg.seeding.sensors_per_bin == 5
    assert cfg.seeding.bin_size == 16  # the option beats the file
    assert cfg.stores.raw == "r.zarr"
    assert cfg.stores.seedings.endswith("seedings.zarr")  # None means "not given"


def test_typo_is_named_with_a_suggestion(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[seeding]\nsensors_per_bim = 5\n")
    with pytest.raises(ConfigError, match=r"'seeding.sensors_per_bim': unknown key \(did you mean 'seeding.sensors_per_bin'\?\)"):
        load_config(cfg_file)


def test_invalid_values_name_the_key():
    with pytest.raises(ConfigError, match=r"'seeding.bin_size'.*greater than or equal to 1"):
        load_config(None, {"seeding.bin_size": 0})
    with pytest.raises(ConfigError, match="divisible"):
        load_config(None, {"seeding.bin_size": 16, "seeding.upsampling": 5})
    with pytest.raises(ConfigError, match=r"'archive.valid_range'.*low < high"):
        load_config(None, {"archive.valid_range": [40, 10]})


def test_bad_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[seeding\n")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
