"""The system catalog: one YAML card per system and the structure files they name.

Installed as the package ``boltzgen.catalog`` (``boltzgen/catalog`` links to this
folder), so ``boltzgen.load_system(name)`` finds the cards outside a checkout too.
"""
