-- v3: sweep cells. A cell's key (its canonical configuration) is unique among runs, so an
-- interrupted sweep resumes without repeating a cell, even with several writers.
ALTER TABLE runs ADD COLUMN cell_key TEXT;
CREATE UNIQUE INDEX runs_by_cell ON runs(cell_key) WHERE cell_key IS NOT NULL;
