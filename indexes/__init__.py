"""Ground floor: building, saving and opening indexes, each in a content-addressed folder."""
