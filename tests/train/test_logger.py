"""cans.train.logger: a warning is written once, and a log line never lands on a progress bar's line."""
import re


def test_warnings_once_and_log_lines_never_glued_to_a_bar(tmp_path, capsys):
    from tqdm import tqdm

    from cans.train.logger import RunLogger

    log = RunLogger(str(tmp_path), tensorboard=False)
    log.warning("no CUDA device: a test")
    bar = tqdm(total=10, desc="epoch 1/1", file=__import__("sys").stdout, dynamic_ncols=False, ncols=60)
    for i in range(3):
        bar.update(1)
        log.info(f"line {i} while the bar runs")
    bar.close()
    log.close()
    out = capsys.readouterr().out
    assert re.search(r"\d\d:\d\d:\d\d WARNING: no CUDA device: a test\n", out) and "WARNING WARNING" not in out
    for i in range(3):
        at = out.index(f"line {i} while the bar runs") - len("00:00:00 ")
        assert re.match(r"\d\d:\d\d:\d\d ", out[at:]) and (at == 0 or out[at - 1] in "\r\n"), repr(out[max(0, at - 40):at + 5])
    text = (tmp_path / "train.log").read_text()
    assert "WARNING no CUDA device: a test" in text and "WARNING WARNING" not in text and "WARNING: WARNING" not in text
