"""`clients-import run` and `retry` with a file past MAX_BYTES: the pipeline's own refusal, at once, not a traceback."""

import pytest

from clients_import.cli import main


@pytest.mark.parametrize("command", [["run"], ["retry", "some-job"]])
def test_a_file_past_the_limit_is_refused_as_file_too_large_before_anything_starts(command, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    big = tmp_path / "big.csv"
    with big.open("wb") as file:
        file.truncate(10 * 1024 * 1024 + 1)  # one byte past 10 MiB (sparse: nothing is written)

    code = main([*command, str(big)])

    said = capsys.readouterr().err
    assert code == 2
    assert "The file is 10,485,761 bytes (10.0 MiB); the limit is 10,485,760 bytes (10.0 MiB). Split it into smaller files. [file_too_large]" in said
    assert "Traceback" not in said and not (tmp_path / "none.db").exists()
