"""Stage ``report``: one static page (``report/index.html``) from what the other stages wrote.
``html`` renders sections (``Section``: tables, figures, HTML blocks, samples) into a page
without scripts; ``stage`` gathers the corpus statistics and the sections the evaluate stage
recorded."""
