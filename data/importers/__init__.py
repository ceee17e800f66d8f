"""Public interaction datasets -> feedray events: readers, the mapping, the import job."""
