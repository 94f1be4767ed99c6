from e3logic.cli.main import run

run()
