-- The hashes of the stored utterances in index order, 16 bytes each (see
-- utteranceHash), so that Apply finds the utterances a snapshot changes
-- without reading and comparing every stored one. NULL on calls written
-- before this column, whose utterances Apply then reads in full.
ALTER TABLE calls ADD COLUMN utterance_hashes BLOB;
