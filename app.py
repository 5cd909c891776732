"""hnm studio: `streamlit run app.py`. The entry point registers the pages; each page draws widgets and calls
hnm_core (docs/ARCHITECTURE.md). The Data page (pages/data.py) is the home page."""

import streamlit as st

from studio import persist
from studio.state import DATA_PAGE, EXPLORE_PAGE, EXPORT_PAGE, MINE_PAGE, REVIEW_PAGE, TRAIN_PAGE, TUNE_PAGE, init_state

st.set_page_config(page_title="hnm studio", page_icon=":material/target:", layout="wide")
init_state()
if restored := persist.start():
    st.toast(restored, icon=":material/history:")
pages = st.navigation([
    st.Page(DATA_PAGE, title="Data", icon=":material/database:", default=True),
    st.Page(MINE_PAGE, title="Mine", icon=":material/construction:"),
    st.Page(EXPLORE_PAGE, title="Explore", icon=":material/scatter_plot:"),
    st.Page(TUNE_PAGE, title="Tune", icon=":material/tune:"),
    st.Page(REVIEW_PAGE, title="Review", icon=":material/rate_review:"),
    st.Page(EXPORT_PAGE, title="Export", icon=":material/download:"),
    st.Page(TRAIN_PAGE, title="Train", icon=":material/model_training:"),
])
saver = persist.Saver.before_run()
try:
    pages.run()
    saver.after_run()
finally:  # also after st.stop() and an interrupted run: a reload brings back what this run left
    saver.save()
