"""Project conventions that a grep can check (CONTRIBUTING.md, "Randomness").

The chapters, the assignments, the library, the benchmarks and the examples never reseed the
reader's global RNG: randomness enters through a ``torch.Generator`` or a module is built inside
``with seeded_init(seed):``. Only ``ctrl_teach.profiles.seed_everything`` (and ``seeded_init``
itself, inside ``fork_rng``) may call ``torch.manual_seed``.
"""

import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALLOWED = {ROOT / "ctrl_teach" / "profiles.py"}
# a global reseed: torch.manual_seed(...), np.random.seed(...), random.seed(...), but not
# torch.Generator().manual_seed(...) or gen.manual_seed(...)
GLOBAL_RESEED = re.compile(r"(?<![\w.)])(torch\.manual_seed|np\.random\.seed|random\.seed)\(")


def _sources():
    for path in sorted(ROOT.glob("notebooks/**/*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                yield f"{path.relative_to(ROOT)} cell {i}", "".join(cell["source"])
    for folder in ("ctrl_teach", "benchmarks", "examples", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path not in ALLOWED:
                yield str(path.relative_to(ROOT)), path.read_text()


def test_nothing_reseeds_the_global_rng():
    offenders = [f"{where}: {line.strip()}" for where, text in _sources()
                 for line in text.splitlines()
                 if GLOBAL_RESEED.search(line) and not line.lstrip().startswith("#")]
    assert not offenders, ("use a torch.Generator or `with seeded_init(seed):` instead of "
                           "reseeding the global RNG:\n" + "\n".join(offenders))


def test_the_pattern_catches_a_reseed_and_spares_a_generator():
    assert GLOBAL_RESEED.search("torch.manual_seed(0)")
    assert GLOBAL_RESEED.search("    np.random.seed(1)")
    assert not GLOBAL_RESEED.search("g = torch.Generator().manual_seed(0)")
    assert not GLOBAL_RESEED.search("gen.manual_seed(3)")
