from ganserve.cli import main

raise SystemExit(main())
