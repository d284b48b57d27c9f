"""mibgkit: 123I-MIBG SPECT/CT uptake ratios, tumour asphericity and event-free survival.

Reproduces and extends Zhou et al., EJNMMI Research 2025. See README.md for the module map.
"""

__version__ = "0.1.0"
