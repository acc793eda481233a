"""``python -m app.simulator --port 9999 …``: the simulator without the BTC Watcher app."""

from app.simulator.cli import standalone_command

if __name__ == "__main__":
    standalone_command()
