from fraudctl.cli.main import run

run()
