"""The one place that fixes the class order; every label index in the project comes from here."""

CLASSES = ("NEUTROPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE")
CLASS_INDEX = {name: index for index, name in enumerate(CLASSES)}
