from prefixlab.cli import main

raise SystemExit(main())
