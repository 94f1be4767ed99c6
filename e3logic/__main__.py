from e3logic.cli.main import main

main()
