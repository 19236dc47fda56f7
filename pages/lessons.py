"""Lessons page: a teacher's sequence of steps, worked through one at a time. Each step that
trains runs or asks a question wants the student's prediction first (skippable, the skip
recorded); once the runs over seeds are done, the step shows the prediction judged against
them, the notebook's value and then the explanation. A step has its own link; a lesson
remembers where each student is; a teacher downloads it as a handout.

Thin: the parts are app/lessons_ui.py, the logic engine/lessons.py.
"""

import streamlit as st

from app import lessons_ui, services

st.title("Lessons")
st.caption("Predict, run, explain: the course notebooks' questions, answered by runs over seeds. "
           "Commit to a guess before each run; it is called right or wrong only when the seeds "
           "can tell.")
lessons_ui.page(services.get_store())
