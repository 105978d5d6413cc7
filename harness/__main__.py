"""`python -m harness` -> harness.cli.main()."""
from harness.cli import main

raise SystemExit(main())
