"""`python -m facetune` (and `torchrun -m facetune`) run the CLI."""
from .cli import main

main()
