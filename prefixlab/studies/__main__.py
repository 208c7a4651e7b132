from prefixlab.studies.cli import main

raise SystemExit(main())
