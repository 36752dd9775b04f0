"""The Kubeflow pipeline: preprocess -> pretrain -> index -> finetune -> evaluate -> register."""
