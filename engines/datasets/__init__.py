"""Dataset layouts (HumanData), sample processing (crop, augmentation, targets) and mixing,
shared by training and evaluation."""

#: The official test sets ``mocap eval --dataset`` reads in their official layouts (the official
#: class names, as ``--testset`` takes them); any other name is read as a HumanData test set.
OFFICIAL_TEST_SETS = ("EHF", "UBody", "PW3D", "AGORA", "EgoBody_Egocentric", "ARCTIC")
