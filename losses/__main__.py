"""python -m losses: print the README's formulation tables, rendered from the registry."""
from losses.table import formulation_table, path_table

print(formulation_table())
print(path_table(), end="")
