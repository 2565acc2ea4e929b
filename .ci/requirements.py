#!/usr/bin/env python3
"""Print the pip requirements listed in environment.yml (stdlib only: runs before any venv).

python3 .ci/requirements.py          # the `pip:` section (a requirements file)
python3 .ci/requirements.py --no-deps  # the `# no-deps:` lines (installed with pip --no-deps)
"""

import re
import sys
from pathlib import Path

text = (Path(__file__).resolve().parents[1] / "environment.yml").read_text()
if "--no-deps" in sys.argv:
    reqs = re.findall(r"^#\s+no-deps:\s+(\S+)", text, flags=re.M)
else:
    section = text.split("- pip:", 1)[1]
    reqs = []
    for line in section.splitlines()[1:]:
        m = re.match(r"^\s+-\s+([^\s#]+)", line)
        if not m:
            break
        reqs.append(m.group(1))
if not reqs:
    sys.exit("environment.yml: no requirements found")
print("\n".join(reqs))
