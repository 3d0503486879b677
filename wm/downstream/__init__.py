"""What a pretrained encoder is used for beyond world models: fine-tuning with a classification head
(`finetune`), linear and attentive probes (`probes`), feature export (`features`) and the clip augmentations
fine-tuning uses (`augment`)."""
