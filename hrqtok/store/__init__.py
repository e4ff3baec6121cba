"""Storage: model directories (``model_dir``), token tables (``tables``), multitoken parsing
(``multitokens``) and a WordNet model's hierarchy files (``hierarchy``)."""
