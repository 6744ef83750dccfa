"""python -m losses: print the README's formulation table, rendered from the registry."""
from losses.table import formulation_table

print(formulation_table(), end="")
