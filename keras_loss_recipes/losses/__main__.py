"""python -m keras_loss_recipes.losses: print the README's formulation tables, rendered from the registry."""
from keras_loss_recipes.losses.table import formulation_table, path_table

print(formulation_table())
print(path_table(), end="")
