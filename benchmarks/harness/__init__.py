"""The shared training harness: config (TrainConfig and its checks), train (the loop and the
stopping rule), batching, evaluate, metrics, checkpoint, caption. One harness for every decoder,
so the decoder is the only variable."""
