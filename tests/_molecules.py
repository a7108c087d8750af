"""Small molecules shared by the training tests."""

# drug-like molecules that are not on the evaluation exclusion list (checked with
# rdconfvae.data.is_excluded); ETKDG conformers stand in for experimental ones here
TRAIN_SMILES = [
    "CCOC(=O)c1ccc(N)cc1",
    "CC(C)NCC(O)COc1ccccc1",
    "O=C(O)CCCc1ccc(F)cc1",
    "CCN(CC)CCOC(=O)c1ccccc1",
    "Cc1ccccc1NC(=O)CN1CCCC1",
    "COc1ccc(CCN)cc1OC",
    "CC(=O)Nc1ccc(OCC)cc1",
    "OCC1OC(O)CC1O",
    "CCCCc1ccc(C(=O)O)cc1",
    "CNC(=O)c1cccnc1C",
    "CN1CCN(C(=O)c2ccco2)CC1",
    "Clc1ccc(CN2CCOCC2)cc1",
    "CC(C)(C)OC(=O)NCCO",
    "O=S(=O)(N)c1ccc(Cl)cc1",
    "CCOc1ccccc1C(N)=O",
    "FC(F)(F)c1ccc(CO)cc1",
]
