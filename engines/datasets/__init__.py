"""Dataset layouts (HumanData), sample processing (crop, augmentation, targets) and mixing,
shared by training and evaluation."""
