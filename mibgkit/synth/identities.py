"""Fake identities shaped like a hospital's: names, birth dates, record and accession numbers.

The synthetic cohort plants them in its DICOM headers and in the clinical export so that the
tests can check that no identity reaches a report. All are invented; none is a real person.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["IDENTITY_COLUMNS", "INSTITUTION", "fake_identities"]

#: Identity columns a hospital export carries; never meant for a report.
IDENTITY_COLUMNS = ("patient_name", "birth_date", "hospital_mrn")

_SURNAMES = (
    "Albrechtsen", "Baranowska", "Castellanos", "Dragomirova", "Eriksdottir", "Fairbrother", "Gallardo",
    "Hollingsworth", "Ilievska", "Jaroszewicz", "Kettleborough", "Lindqvist", "Marchetti", "Nakashima",
    "Oyelaran", "Pemberton", "Quillfeldt", "Rasmussen", "Szczepanik", "Thorvaldsen", "Underwood",
    "Valderrama", "Wetherall", "Yamaguchi", "Zielinska", "Abernathy", "Bergstrand", "Cavendish",
    "Delacroix", "Esposito", "Fitzgerald", "Grimaldi", "Hargreaves", "Ivanisevic", "Kowalczyk",
    "Lancaster", "Montgomery", "Nieuwenhuis", "Ostrowska", "Pellegrini", "Rosenkranz", "Sandoval",
    "Tremblay", "Vasquez", "Wojciechowska", "Achterberg", "Blackwood", "Christiansen", "Dunmore",
    "Eversleigh", "Featherstone", "Goldsworthy", "Heathcote", "Ingleby", "Kinsella", "Lockhart",
    "Mirabelli", "Northcott", "Ormsby", "Penhaligon",
)
_GIVEN = {
    "F": ("Anneliese", "Birgitta", "Clementine", "Dagny", "Eleonora", "Florentyna", "Gwendolyn",
          "Henrietta", "Isadora", "Jacqueline", "Katarzyna", "Leocadia", "Marisol", "Nathalie",
          "Ottilie", "Philippa", "Rosalind", "Seraphina", "Theodora", "Valentina", "Wilhelmina",
          "Ximena", "Yolanda", "Zuzanna", "Annika", "Beatrix", "Cordelia", "Delphine", "Evangeline",
          "Felicity", "Georgiana", "Honorata", "Imogen", "Juliana", "Kristiina", "Ludmila",
          "Magdalena", "Noemi", "Octavia", "Perpetua"),
    "M": ("Aurelio", "Bartholomew", "Casimir", "Demetrius", "Emmerich", "Fridtjof", "Gottfried",
          "Horatio", "Ignatius", "Jaroslaw", "Konstantin", "Leopold", "Maximilian", "Nikodem",
          "Octavian", "Peregrine", "Quentin", "Rupert", "Sebastiano", "Thaddeus", "Ulrich",
          "Valentin", "Wenceslas", "Xavier", "Yannick", "Zbigniew", "Alaric", "Benedikt", "Cornelius",
          "Desmond", "Evander", "Florian", "Gregorius", "Hieronymus", "Isidor", "Joachim", "Kasimir",
          "Lysander", "Marcellus", "Norbert"),
}

#: Referring paediatric oncologists (fictitious), as DICOM person names.
_PHYSICIANS = ("Wrenfield^Margarethe^^Dr", "Okonkwo-Lindahl^Tobias^^Dr", "Sauveterre^Ines^^Dr",
               "Brackenridge^Aurelian^^Dr")

#: The fictitious hospital every synthetic file claims to come from.
INSTITUTION = "St. Aldric Children's Hospital"


def _birth_date(scan: _dt.date, age_months: int, back_days: int) -> _dt.date:
    """A birth date at which the child is ``age_months`` completed months old on ``scan``."""
    y, m = divmod(scan.year * 12 + (scan.month - 1) - int(age_months), 12)
    m += 1
    day = min(scan.day, [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28, 31, 30, 31, 30,
                         31, 31, 30, 31, 30, 31][m - 1])
    anchor = _dt.date(y, m, day)
    # Going back fewer days than the previous month has keeps the completed-month age.
    return anchor - _dt.timedelta(days=int(back_days))


def fake_identities(rng: np.random.Generator, sex: Sequence[str], age_months: Sequence[int],
                    scan_dates: Sequence[_dt.date]) -> pd.DataFrame:
    """Names, birth dates, hospital numbers and accession numbers, distinct per patient.

    Parameters
    ----------
    rng : numpy.random.Generator
    sex : sequence of {"M", "F"}
    age_months : sequence of int
        Completed months of age at the scan; birth dates are consistent with it.
    scan_dates : sequence of datetime.date

    Returns
    -------
    pandas.DataFrame
        ``patient_name`` (DICOM person name ``Family^Given``), ``birth_date`` (ISO),
        ``hospital_mrn`` (``SAC`` + 7 digits), ``accession_number`` (``A`` + year + 6 digits),
        ``referring_physician``.
    """
    n = len(sex)
    used: set[str] = set()
    names, births, mrns, accs, doctors = [], [], [], [], []
    mrn_numbers = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    acc_numbers = rng.choice(900_000, size=n, replace=False) + 100_000
    for i in range(n):
        given = _GIVEN[str(sex[i])]
        for attempt in range(100):
            name = f"{_SURNAMES[rng.integers(len(_SURNAMES))]}^{given[rng.integers(len(given))]}"
            if attempt >= 50:
                name += f" {given[rng.integers(len(given))]}"
            if name not in used:
                break
        used.add(name)
        names.append(name)
        births.append(_birth_date(scan_dates[i], int(age_months[i]), int(rng.integers(0, 28))).isoformat())
        mrns.append(f"SAC{int(mrn_numbers[i]):07d}")
        accs.append(f"A{scan_dates[i].year}{int(acc_numbers[i]):06d}")
        doctors.append(_PHYSICIANS[int(rng.integers(len(_PHYSICIANS)))])
    return pd.DataFrame({"patient_name": names, "birth_date": births, "hospital_mrn": mrns,
                         "accession_number": accs, "referring_physician": doctors})
