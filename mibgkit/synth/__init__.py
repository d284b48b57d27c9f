"""Synthetic cohort: anatomy, tumours, DICOM writing and calibration."""
