"""Export: write the curation as training files (the formats of hnm_core.export.formats), preview them, download them or
write them to a folder, and compare with an earlier round."""

from functools import partial
from pathlib import Path

import streamlit as st

from hnm_core.export.formats import FORMATS, export
from hnm_core.prove.rounds import diff_rounds
from hnm_core.wording import counted
from studio import escape, folders, tables
from studio.errors import shown_errors
from studio.state import current_curation, init_state, loaded, need_pool
from studio.widgets import setting_widget

init_state()
st.title("Export")
result = need_pool()
pool = result.pool
params, curation = current_curation(pool)
st.markdown(f"{counted(curation.n_selected, 'sampled negative')} for {counted(curation.n_queries, 'query', 'queries')} "
            f"({curation.n_full_quota:,} with the full {params.negatives}), from the settings on Tune.")
if curation.overrides:
    st.markdown(f"Your verdicts ({escape.plain(str(curation.overrides.path))}): "
                f"{counted(curation.count('unlabelled_positive'), 'unlabelled positive')} and "
                f"{counted(curation.count('bad_negative'), 'bad negative')}, never exported as negatives.")

formats = setting_widget("formats", label="Formats")
st.markdown("\n".join(f"- **{name}**: {FORMATS[name]}" for name in formats))
file_type = setting_widget("file_type", label="File type (triplet, ntuple, ntuple_scores, labeled_pair)",
                           kind="radio")
extra_positives = setting_widget("extra_positives", label="Export your unlabelled positives as extra positives")
signature = (result.key, params, formats, file_type, extra_positives, curation.overrides)
data_path = loaded().path
inputs = [data_path] if data_path else []  # an export may not overwrite the data it was mined from


def _show(done) -> None:
    """Preview, download buttons and manifest of an ExportResult."""
    if st.session_state.get("export_signature") != signature:
        st.warning("The settings changed since these files were written: write them again to include the change.")
    st.markdown(f"Files in {escape.plain(str(done.out_dir))}:")
    for path in done.paths:
        info = done.manifest["files"].get(path.name, {})
        if path.is_dir():  # the hf folder: in the zip, and loadable where it was written
            names = ", ".join(f"{name} ({counted(n, 'row')})" for name, n in info.get("datasets", {}).items())
            st.markdown(f"**{path.name}/** · Hugging Face dataset folder: {names}")
            continue
        head, button = st.columns([4, 1])
        rows = info.get("rows")
        head.markdown(f"**{path.name}**" + (f" · {counted(rows, 'row')}" if rows is not None else ""))
        button.download_button("Download", data=partial(path.read_bytes), file_name=path.name, key=f"dl:{path.name}",
                               on_click="ignore", icon=":material/download:")
        if rows:
            st.dataframe(tables.preview_rows(path), hide_index=True, key=f"preview:{path.name}")
        elif rows == 0:
            notes = ", ".join(f"{k.replace('_', ' ')}: {v:,}" for k, v in info.items() if k not in ("format", "rows"))
            st.caption("No rows" + (f" ({notes})." if notes else "."))
    st.download_button("Download all as a zip", data=partial(folders.zip_folder, done.out_dir),
                       file_name=f"{pool.collection.name}-hnm.zip", mime="application/zip", key="dl:zip",
                       on_click="ignore", type="primary", icon=":material/folder_zip:")
    with st.expander("manifest.json"):
        st.json(done.manifest, expanded=1)


download, folder = st.tabs(["Download", "Write to a folder"])
with download:
    st.caption("The files are written to a folder private to this browser session, then offered for download.")
    if st.button("Build the files", type="primary", key="export_build", disabled=not formats):
        with shown_errors():
            written = export(pool, curation, folders.session_dir() / "export", formats=formats, file_type=file_type,
                             extra_positives=extra_positives,
                             overwrite=True, extra_manifest={"command": "hnm studio"}, inputs=inputs)
            st.session_state["export"] = written
            st.session_state["export_signature"] = signature
with folder:
    target = st.text_input("Output folder on the machine running the app", key="export_dir",
                           placeholder="/data/rounds/round-1")
    overwrite = st.checkbox("Replace an earlier export in this folder (only the files hnm wrote are removed)",
                            key="export_overwrite")
    if st.button("Write", type="primary", key="export_write", disabled=not (formats and target.strip())):
        with shown_errors():
            written = export(pool, curation, Path(target.strip()).expanduser(), formats=formats, file_type=file_type,
                             extra_positives=extra_positives,
                             overwrite=overwrite, extra_manifest={"command": "hnm studio"}, inputs=inputs)
            st.session_state["export"] = written
            st.session_state["export_signature"] = signature
            st.success(f"Wrote {len(written.paths)} files to {escape.plain(str(written.out_dir))}.")

done = st.session_state["export"]
if done is not None:
    st.divider()
    _show(done)
    with st.expander("Compare with an earlier round (`hnm diff`)"):
        earlier = st.text_input("Earlier export folder (written with the pool format)", key="diff_dir")
        other = st.checkbox("Compare even if it was mined from another collection", key="diff_any_collection")
        if earlier.strip():
            with shown_errors():
                diff = diff_rounds(Path(earlier.strip()).expanduser(), done.out_dir, allow_different_collections=other)
                for sentence in diff.sentences():
                    st.markdown(f"- {sentence}")
