"""Streamlit-side helpers of the hnm studio (app.py + pages/): session state, cached loaders, the progress adapter,
widgets built from the settings table, and the tables and figures the pages draw. No mining logic lives here: every
step of the pipeline is a call into hnm_core.

    state     per-session state (data, pool, settings) and the "load data first" guards
    loaders   st.cache_resource / st.cache_data wrappers over models, mining and the UMAP map; uploads
    folders   the session's scratch folder, where a collection's proof lives, folders zipped for download
    progress  the hnm Progress protocol drawn as st.progress bars
    widgets   one widget per setting of hnm_core.settings.SETTINGS
    tables    the display tables (pure functions of a collection, a pool and a curation)
    figures   the plotly figures: the Explore map, the Tune histogram, the audit sweep
    escape    user text made safe for Markdown elements and plotly hover labels
    errors    `with shown_errors():` shows an HnmError as the page's error message
    persist   a reload keeps the work: the URL's session token and the state file under the hnm cache
    search    Explore's query search (whole words, best matches first)
    corrections  where the session's overrides file lives, read cached, and `mark` to add a verdict
    detail    Explore's detail panel: full text, scores, ranks, the reason, the verdict buttons
    review    the Review page's queue, pinned for the session, its verdicts and their estimate
"""
