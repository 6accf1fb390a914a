"""Token shards: the encode stage (``encode``) that writes them, their memory-mapped reader
(``shards``), and the samplers every family's loaders share (``samplers``)."""
