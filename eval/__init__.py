"""avdiar evaluation: sliding-window inference, full diarization, DER/JER reports, plots.

    from eval.evaluate import evaluate   # model + protocol or files -> RTTM, reports, totals
    from eval.compare import compare     # experiment folders -> comparison table and chart
"""
