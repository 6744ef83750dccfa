"""Training recipes: data sources, model builders, the classification recipe, results."""
