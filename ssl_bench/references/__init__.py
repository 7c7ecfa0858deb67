"""Published numbers to compare against, as package data: ``published.csv`` (read by ``ssl_bench.report.published``).

One row per number: source, table, protocol (the paper's protocol in words), dataset, backbone, params, method,
layer, metric, value, plus ``eval`` and ``eval_protocol`` (the ``eval``/``protocol`` of results.csv the row is
comparable with) and a free-text ``note`` (e.g. "best layer res4"). Detection and svm rows carry a label of
``ssl_bench.protocol`` ("voc07 on voc07+12 trainval->test 25000 it"): the report matches them with ours on the
scoring, data and splits, and says when the schedule differs or is not known (a label without "<n> it": the
schedule of that table is not recorded here, as for the VOC07-only rows; Table 1's is DetectionConfig's default). Linear rows at the paper's best layer have
layer ``best``. Method and layer use our names (``rotnet`` for Rotation, ``layer3`` for res4) so rows can be
matched with ours; the paper's names stay in the protocol text or the note. Add your own rows with a source and protocol.

``params`` counts the network with a 1000-way linear classifier, as PIRL prints it for Fig. 2's points and as our
rows count it (``Backbone.num_params_with_classifier``). Recounted with torchvision / timm (issue 17): ResNet-50
25.56 M (paper 25.6), ResNet-101 44.55 M (CPC, 44.5), ResNet-50 at twice the width 97.95 M (PIRL-c2x, 98; our
``resnet50-w2``), AlexNet 61.1 M (AET, DeepCluster, 61), CMC's two full-width ResNet-50 trunks (one per view,
HobbitLong/CMC ``ResNetV2``) with a classifier on their 4,096 joint features 51.1 M (51). Not recountable here, so as
the paper prints them: CPC-Huge 305 M, BigBiGAN-Big 86 M, AMDIM 670 M (their notes say so).
"""
